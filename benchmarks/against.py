"""This working tree against an earlier revision, in one sitting:
``python -m benchmarks.against REV [--repeats 3] [--quick] [--out FILE.json]``.

A ratio measured on another day is not a baseline: on this 2-core CPU the plain
lifting model's rf-243 pass took 1.10 s in the run recorded with the fused kernels
(``results/cpu-2core.json``) and 0.72 s in ``cpu-2core-train-4.json``, with the same
code, so the same chiral model reads a lower P2 on the slower day. This script
extracts ``REV`` (``git archive``) and measures both trees in child processes that
alternate (REV, this tree, REV, ...), so both see the same machine:

* ``p2``: the lifting model (``chiral_tasks.lifting.model.TemporalModel``, Human3.6M's
  17 joints, receptive field 243, 8 sequences x 243 output frames, eval mode), one
  chiral pass in the model's default form (1020 channels) over the plain model (1024)
  on the input and its mirror stacked: flip augmentation's work. Where the tree has
  ``chiral_jax.fused`` and its kernels build, the variant ``chiral_fused`` is the
  chiral pass traced with them on (else the child's record says why not).
* ``p1``, ``p1_tanh``: one chiral conv layer (kernel 3, width 1020, 32 x 243 frames),
  forward + backward, alone and with its tanh, every variant of the tree's own
  ``benchmarks.layers`` case, over the plain conv.

Each child imports only its own tree's ``chiral_jax``, ``chiral_tasks`` and
``benchmarks``, through the same driver (:data:`_DRIVER`), which uses only what both
trees have. JSON: every child's ratios and seconds, their median and range per tree
and measure, the device line, package versions and load averages.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs in a child whose PYTHONPATH holds one tree; prints one JSON line.
_DRIVER = r"""
import json, os, sys
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
from chiral_jax.skeletons import H36M_17
from chiral_tasks.lifting.model import TemporalModel
from benchmarks.layers import LayerCase, run_layer_case
from benchmarks.timing import Variant, time_variants

size = json.loads(sys.argv[1])
rounds = size["rounds"]
out = {"tree": os.environ["CHIRAL_AGAINST_TREE"]}
import flax, jaxlib, platform
out["versions"] = {"python": platform.python_version(), "jax": jax.__version__,
                   "jaxlib": jaxlib.__version__, "flax": flax.__version__,
                   "numpy": np.__version__}

def eval_fn(model):
    model.eval()
    graphdef, state = nnx.split(model)
    return jax.jit(lambda state, x: nnx.merge(graphdef, state)(x)), state

common = dict(filter_widths=tuple(size["widths"]), rngs=nnx.Rngs(0))
plain = TemporalModel(H36M_17, H36M_17, chiral=False, channels=size["plain"], **common)
chiral = TemporalModel(H36M_17, H36M_17, chiral=True, channels=size["chiral"], **common)
rf = int(np.prod(size["widths"]))
x = jax.random.normal(jax.random.key(0), (size["batch"], size["frames"] + rf - 1, 17, 2))
both = jnp.concatenate([x, H36M_17.layout(2).transform(x)], axis=0)
plain_fn, plain_state = eval_fn(plain)
chiral_fn, chiral_state = eval_fn(chiral)
variants = [Variant("plain_flip", plain_fn, (plain_state, both)),
            Variant("chiral", chiral_fn, (chiral_state, x))]

def fused_variant():
    # The chiral pass traced with the tree's opt-in fused kernels, or why there is none.
    import chiral_jax
    if not os.path.isdir(os.path.join(os.path.dirname(chiral_jax.__file__), "fused")):
        return None, "this tree has no chiral_jax.fused"
    try:
        from chiral_jax import fused
        fused.enable()
        graphdef, _ = nnx.split(chiral)
        fn = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
        jax.block_until_ready(fn(chiral_state, x))  # traced with the kernels on
        fused.disable()
        return Variant("chiral_fused", fn, (chiral_state, x)), None
    except Exception as error:  # the kernels cannot be built here (no compiler)
        return None, f"{type(error).__name__}: {error}"

variant, why_not = fused_variant()
if variant is None:
    out["fused"] = why_not
else:
    variants.append(variant)
timing = time_variants(variants, "plain_flip", rounds=rounds)
out["p2"] = {"seconds": timing.seconds, "ratio": timing.ratio}
for key, act in (("p1", False), ("p1_tanh", True)):
    case = LayerCase("conv", size["layer_width"], size["layer_batch"], "fwd+bwd",
                     activation=act, frames=size["frames"])
    record = run_layer_case(case, size["layer_rounds"])
    out[key] = {"seconds": record["seconds"], "ratio": record["ratio"]}
# Every module of the three packages came from this tree (not from an installed copy).
root = os.environ["PYTHONPATH"]
strays = sorted(name for name, module in sys.modules.items()
                if name.split(".")[0] in ("chiral_jax", "chiral_tasks", "benchmarks")
                and not (getattr(module, "__file__", None) or root).startswith(root))
if strays:
    raise SystemExit(f"modules from outside {root}: {strays}")
print(json.dumps(out))
"""

PAPER = dict(
    widths=[3] * 5,
    batch=8,
    frames=243,
    plain=1024,
    chiral=1020,
    layer_width=1020,
    layer_batch=32,
    rounds=15,
    layer_rounds=7,
)
QUICK = dict(
    widths=[3, 3],
    batch=2,
    frames=9,
    plain=64,
    chiral=68,
    layer_width=68,
    layer_batch=2,
    rounds=2,
    layer_rounds=2,
)


def _import_root(tree: Path, into: Path) -> Path:
    """A folder whose ``chiral_jax``, ``chiral_tasks`` and ``benchmarks`` are ``tree``'s."""
    into.mkdir(parents=True)
    for name, source in (
        ("chiral_jax", "chiral_jax"),
        ("chiral_tasks", "tasks"),
        ("benchmarks", "benchmarks"),
    ):
        (into / name).symlink_to(tree / source, target_is_directory=True)
    return into


def _run_child(root: Path, label: str, size: dict, cwd: Path) -> dict:
    env = dict(
        os.environ,
        PYTHONPATH=str(root),
        CHIRAL_AGAINST_TREE=label,
        JAX_ENABLE_COMPILATION_CACHE="false",
    )
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(size)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        raise SystemExit(f"{label}: the measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def _summary(children: list[dict]) -> dict:
    """Median and range of every ratio, per tree and measure."""
    table: dict = {}
    for child in children:
        for measure in ("p2", "p1", "p1_tanh"):
            for variant, ratio in child[measure]["ratio"].items():
                cell = table.setdefault(child["tree"], {}).setdefault(measure, {})
                cell.setdefault(variant, []).append(ratio)
    return {
        tree: {
            measure: {
                v: {"median": statistics.median(r), "min": min(r), "max": max(r)}
                for v, r in variants.items()
            }
            for measure, variants in measures.items()
        }
        for tree, measures in table.items()
    }


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the earlier revision (a commit, tag or branch)")
    parser.add_argument("--repeats", type=int, default=3, help="child processes per tree")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.out is not None and args.out.exists() and not args.overwrite:
        parser.error(f"{args.out} exists: pass --overwrite to replace it, or name a new file")
    from benchmarks.timing import device_line

    size = QUICK if args.quick else PAPER
    rev = _git("rev-parse", "--verify", f"{args.rev}^{{commit}}")
    changed = _git("status", "--porcelain", "--untracked-files=no")
    record = {
        "command": " ".join(["python -m benchmarks.against", *(argv or sys.argv[1:])]),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": device_line(),
        "rev": rev,
        "this_tree": _git("rev-parse", "HEAD") + (" + changes" if changed else ""),
        "size": size,
        "load_average_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "rev").mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp / "rev")], input=archive, check=True)
        roots = {
            "rev": _import_root(tmp / "rev", tmp / "root-rev"),
            "this": _import_root(ROOT, tmp / "root-this"),
        }
        children = []
        for repeat in range(args.repeats):
            for label, root in roots.items():
                child = _run_child(root, label, size, tmp)
                children.append(child)
                p2 = child["p2"]["ratio"]["chiral"]
                print(
                    f"[{repeat + 1}/{args.repeats}] {label:4s} P2 {p2:.3f}  P1 conv "
                    f"{child['p1']['ratio']}  +tanh {child['p1_tanh']['ratio']}",
                    flush=True,
                )
    record.update(children=children, summary=_summary(children), load_average_end=os.getloadavg())
    for measure in ("p2", "p1", "p1_tanh"):
        for tree, measures in record["summary"].items():
            cells = "  ".join(
                f"{v} {c['median']:.3f} [{c['min']:.3f}-{c['max']:.3f}]"
                for v, c in measures[measure].items()
                if v not in ("plain", "plain_flip")
            )
            print(f"{measure:8s} {tree:5s} {cells}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
