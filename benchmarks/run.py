"""Run the benchmark suite: ``python -m benchmarks.run [--quick] [--out FILE.json]``.

Prints one table row per case and writes every measurement to JSON: the device
line, the command, load averages, and per case the median seconds of each variant,
its median per-round ratio to the plain baseline, XLA's FLOP count, and for models
the parameter counts. The summary names the project's targets:

* P1: chiral dense / conv layer, forward + backward, width 1020, batch >= 4096
  (conv: >= 32 x 243 frames), time / plain: <= 0.6 required, <= 0.55 target;
* P2: chiral temporal model, one pass / plain model with flip augmentation: <= 0.35
  (also reported for the forecasting task's LSTM model);
* the lifting model's training step and its first call (compile), chiral / plain, at
  the demo's size and the paper's;
* and the lifting task's transformer: one chiral pass / plain with flip augmentation, and
  its training step and first call, chiral / plain, at the quick size and MixSTE's.

``--skip-layers --skip-models`` runs the transformer cases alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import re
import sys
import time
from pathlib import Path

import jax

from benchmarks.forecaster import ForecasterCase, run_forecaster_case
from benchmarks.layers import LayerCase, fused_kernels, run_layer_case
from benchmarks.temporal import ModelCase, TrainCase, run_model_case, run_train_case
from benchmarks.timing import device_line
from benchmarks.transformer import (
    MIXSTE,
    TransformerCase,
    run_transformer_case,
    run_transformer_train_case,
)

PASSES = ("fwd", "fwd+bwd")


def layer_cases(quick: bool) -> list[LayerCase]:
    if quick:
        return [
            LayerCase("dense", 1020, 2048, "fwd+bwd"),
            LayerCase("dense", 1020, 2048, "fwd+bwd", activation=True),
            LayerCase("conv", 1020, 4, "fwd"),
        ]
    cases = [
        LayerCase("dense", width, batch, pass_)
        for width in (256, 1020, 2048)
        for batch in (256, 1024, 4096, 8192)
        for pass_ in PASSES
    ]
    cases += [LayerCase("conv", width, 8, pass_) for width in (256, 1020, 2048) for pass_ in PASSES]
    cases += [LayerCase("conv", 1020, 32, pass_) for pass_ in PASSES]
    cases += [
        LayerCase("dense", 1020, batch, pass_, activation=True)
        for batch in (4096, 8192)
        for pass_ in PASSES
    ]
    cases += [LayerCase("conv", 1020, 32, pass_, activation=True) for pass_ in PASSES]
    return cases


def model_cases(quick: bool) -> list[ModelCase]:
    if quick:
        return [ModelCase((3, 3, 3), batch=4, impls=("dense", "even_odd"))]
    return [ModelCase((3, 3, 3), batch=8), ModelCase((3, 3, 3, 3, 3), batch=8)]


def train_cases(quick: bool) -> list[TrainCase]:
    # The demo's model (128 plain / 119 chiral channels, batch 256) and the paper's.
    demo = TrainCase((3, 3, 3), batch=256, plain_channels=128, chiral_channels=119)
    if quick:
        return [dataclasses.replace(demo, batch=32)]
    return [demo, TrainCase((3, 3, 3, 3, 3), batch=64)]


def forecaster_cases(quick: bool) -> list[ForecasterCase]:
    return [ForecasterCase(hidden=104, batch=32)] if quick else [ForecasterCase()]


def transformer_cases(quick: bool) -> list[TransformerCase]:
    """Inference: the model's default size on 64 clips; MixSTE's in the full run."""
    return [TransformerCase(batch=64)] + ([] if quick else [MIXSTE])


def transformer_train_cases(quick: bool) -> list[TransformerCase]:
    """Training: the model's default size on 32 clips; MixSTE's in the full run."""
    return [TransformerCase(batch=32)] + ([] if quick else [MIXSTE])


def _format_row(record: dict, ratio_key: str) -> str:
    seconds, ratios = record["seconds"], record[ratio_key]
    cells = [f"{name} {seconds[name] * 1e3:8.1f} ms {ratios[name]:5.3f}" for name in seconds]
    return f"{record['case']:<36s} | " + " | ".join(cells)


def _run(cases, runner, rounds: int, ratio_key: str, records: list) -> None:
    """Run and print each case (``runner(case, rounds)``), appending its record."""
    for case in cases:
        result = runner(case, rounds)
        result["load_average"] = os.getloadavg()
        records.append(result)
        print(_format_row(result, ratio_key), flush=True)
        if "params" in result:
            params = result["params"]
            print(f"{'':36s}   parameters: plain {params['plain']:,}, chiral {params['chiral']:,}")


def summary(
    layers: list[dict],
    models: list[dict],
    forecasters: list[dict] = (),
    trains: list[dict] = (),
    transformers: list[dict] = (),
    transformer_trains: list[dict] = (),
) -> dict:
    """P1 and P2: the ratios at the largest measured target sizes; the training steps' and
    the transformer's ratios at every measured size."""
    out = {}

    def pick(kind: str, activation: bool, min_rows: int) -> dict | None:
        found = [
            r for r in layers
            if r["kind"] == kind and r["width"] == 1020 and r["pass_"] == "fwd+bwd"
            and r["activation"] == activation and r["rows"] >= min_rows
        ]
        return max(found, key=lambda r: r["rows"]) if found else None

    for key, kind, activation, min_rows, variant in (
        ("P1 dense (layer impl even_odd)", "dense", False, 4096, "even_odd"),
        ("P1 dense (even/odd form)", "dense", False, 4096, "even_odd_form"),
        ("P1 dense (even/odd form, fused)", "dense", False, 4096, "even_odd_form_fused"),
        ("P1 dense+tanh (even/odd form)", "dense", True, 4096, "even_odd_form"),
        ("P1 dense+tanh (even/odd form, fused)", "dense", True, 4096, "even_odd_form_fused"),
        ("P1 conv (layer impl even_odd)", "conv", False, 32 * 243, "even_odd"),
        ("P1 conv (even/odd form)", "conv", False, 32 * 243, "even_odd_form"),
        ("P1 conv (even/odd form, fused)", "conv", False, 32 * 243, "even_odd_form_fused"),
        ("P1 conv+tanh (even/odd form)", "conv", True, 32 * 243, "even_odd_form"),
        ("P1 conv+tanh (even/odd form, fused)", "conv", True, 32 * 243, "even_odd_form_fused"),
    ):
        record = pick(kind, activation, min_rows)
        if record is not None and variant in record["ratio"]:
            out[key] = {"case": record["case"], "ratio": record["ratio"][variant]}
    if models:
        record = max(models, key=lambda r: r["receptive_field"])
        for name in record["seconds"]:
            if name.startswith("chiral"):
                out[f"P2 {name}"] = {
                    "case": record["case"], "ratio": record["ratio_to_plain_flip"][name]
                }
    for record in trains:
        size = f"rf{record['receptive_field']} c{record['plain_channels']}"
        for name in ("chiral_dense", "chiral_even_odd"):
            out[f"train step {name} {size}"] = {
                "case": record["case"], "ratio": record["ratio"][name]
            }
            out[f"first call {name} {size}"] = {
                "case": record["case"], "ratio": record["first_call_ratio"][name]
            }
    if forecasters:
        record = max(forecasters, key=lambda r: r["hidden"])
        out["P2 forecaster chiral"] = {
            "case": record["case"], "ratio": record["ratio_to_plain_flip"]["chiral"]
        }
    for record in transformers:
        out[f"P2 transformer chiral {record['size']}"] = {
            "case": record["case"], "ratio": record["ratio_to_plain_flip"]["chiral"]
        }
    for record in transformer_trains:
        for key, ratios in (("train step", "ratio"), ("first call", "first_call_ratio")):
            out[f"{key} transformer chiral {record['size']}"] = {
                "case": record["case"], "ratio": record[ratios]["chiral"]
            }
    return out


SUMMARY_ROWS = {
    "train step chiral_dense rf27 c128": "lifting training step, demo size (27 frames, 119 vs "
    "128 channels, 256 windows, Adam), the default dense form",
    "first call chiral_dense rf27 c128": "its first call (trace, compile, one step)",
    "train step chiral_even_odd rf243 c1024": "lifting training step, paper size (243 frames, "
    "1020 vs 1024 channels, 64 windows), the default even/odd form",
    "first call chiral_even_odd rf243 c1024": "its first call",
    "train step chiral_dense rf243 c1024": "the same, paper size, the dense form "
    "(`impl=\"dense\"`)",
    "first call chiral_dense rf243 c1024": "its first call",
    "P2 chiral_auto": "lifting `TemporalModel` (243 frames, one pass) ÷ plain with flip TTA "
    "(two passes)",
    "P2 forecaster chiral": "forecasting `Forecaster` (LSTMs 1040 wide, 16 steps) ÷ plain with "
    "flip TTA",
}
"""The README's speed table: summary entry -> what it measures."""


def markdown_summary(runs: list[dict]) -> str:
    """The README's speed table from benchmark results files: each
    :data:`SUMMARY_ROWS` entry's chiral / plain ratio, as the range over the runs."""
    lines = ["| case | chiral ÷ plain |", "|---|---|"]
    for key, label in SUMMARY_ROWS.items():
        ratios = [run["summary"][key]["ratio"] for run in runs]
        low, high = min(ratios), max(ratios)
        text = f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}–{high:.2f}"
        lines.append(f"| {label} | {text} |")
    devices = sorted({run["device"] for run in runs})
    # The command without its --out (where each run's JSON went): the same for every run.
    commands = sorted({re.sub(r" --out \S+", "", run["command"]) for run in runs})
    shown = "; ".join(f"`{c}`" for c in commands)
    lines += ["", f"{len(runs)} runs on {', '.join(devices)}: {shown}."]
    return "\n".join(lines)


def fused_available() -> bool:
    """Whether the fused CPU kernels can be switched on here (builds them if needed)."""
    with fused_kernels(True) as on:
        return on


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few cases, < 2 minutes")
    parser.add_argument("--out", type=Path, help="write the JSON record here (a new file)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out file"
    )
    parser.add_argument("--rounds", type=int, help="timing rounds per case (default 7; quick 3)")
    parser.add_argument("--skip-layers", action="store_true")
    parser.add_argument(
        "--skip-models",
        action="store_true",
        help="skip the temporal model, forecaster and training-step cases",
    )
    parser.add_argument(
        "--skip-transformer", action="store_true", help="skip the transformer cases"
    )
    args = parser.parse_args(argv)
    if args.out is not None and args.out.exists() and not args.overwrite:
        # Checked before the first case: a run takes minutes, a record is a result.
        print(f"benchmarks.run: error: {args.out} exists; pass --overwrite to replace it",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    # First calls are fresh compilations: no persistent cache (a user's would serve them).
    jax.config.update("jax_enable_compilation_cache", False)
    rounds = args.rounds or (3 if args.quick else 7)
    record = {
        "device": device_line(),
        "fused_kernels": "measured as the *_fused variants (chiral_jax.fused)"
        if fused_available()
        else "unavailable (no variant *_fused)",
        "command": "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None else argv),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "rounds": rounds,
        "load_average_start": os.getloadavg(),
        "layers": [],
        "models": [],
        "forecasters": [],
        "train_steps": [],
        "transformers": [],
        "transformer_train_steps": [],
    }
    print(record["device"])
    start = time.perf_counter()
    if not args.skip_layers:
        print("layer cases (median ms, median per-round ratio to plain):")
        _run(layer_cases(args.quick), run_layer_case, rounds, "ratio", record["layers"])
    if not args.skip_models:
        print("model cases (median ms, median per-round ratio to plain with flip):")
        flip = "ratio_to_plain_flip"
        _run(model_cases(args.quick), run_model_case, rounds, flip, record["models"])
        _run(forecaster_cases(args.quick), run_forecaster_case, rounds, flip, record["forecasters"])
        print("training steps (median ms, median per-round ratio to plain):")
        _run(train_cases(args.quick), run_train_case, rounds, "ratio", record["train_steps"])
    if not args.skip_transformer:
        print("transformer cases (median ms, ratio to plain one pass):")
        _run(transformer_cases(args.quick), run_transformer_case, rounds, "ratio_to_plain",
             record["transformers"])
        print("transformer training steps (median ms, median per-round ratio to plain):")
        _run(transformer_train_cases(args.quick), run_transformer_train_case, rounds, "ratio",
             record["transformer_train_steps"])
    record["summary"] = summary(
        record["layers"], record["models"], record["forecasters"], record["train_steps"],
        record["transformers"], record["transformer_train_steps"],
    )
    record["load_average_end"] = os.getloadavg()
    record["seconds_total"] = time.perf_counter() - start
    print("summary:")
    for key, value in record["summary"].items():
        print(f"  {key:<36s} {value['ratio']:.3f}  ({value['case']})")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
