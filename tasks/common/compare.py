"""Chiral vs plain: one experiment shape for the three tasks.

Every task's ``experiment`` (and ``demo``, its one-seed form) trains the models it
names in :data:`TRAINED` on the same data, in the same order, for each seed, and
scores each on the test set in one pass and with test-time flip averaging (TTA). A
cell's results hold ``{"test": {metric: value}, "test_tta": {...}, "params": int,
"history": [...]}``. The table's rows (:func:`rows`):

- ``chiral``: the chiral model, the paper's odd activation on every channel;
- ``chiral_mixed``: the chiral model with the odd activation on the negated channels
  only and the plain model's function (ReLU) on the channels that keep their sign;
- ``plain``: the plain model trained with flip augmentation, one pass;
- ``plain_tta``: the same trained model, averaged with its mirror (two passes);
- ``plain_noflip``: the plain model trained without flip augmentation.

:func:`summarise` gives each row's mean and standard deviation over seeds and the
paired differences of the headline metric (:data:`DIFFERENCES`) with a bootstrap 95 %
interval of their mean; :func:`markdown` renders them for the README and the docs.
Chiral with TTA equals chiral one-pass (the model is exactly equivariant): the
largest difference over seeds is recorded as the check.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from chiral_tasks.common.results import (
    format_table,
    mean_std_over_seeds,
    paired_difference,
    plot_curves,
)
from chiral_tasks.common.run import LENGTH_KEYS, Run, grid, run_experiment

MIXED_EVEN_ACTIVATION = "relu"
"""The function of ``chiral_mixed``'s channels that keep their sign (the plain model's)."""

TRAINED = ("chiral", "chiral_mixed", "plain", "plain_noflip")
"""The models a comparison trains (a task may leave one out, saying why)."""

DIFFERENCES = (
    ("chiral", "plain_tta"),
    ("chiral", "plain"),
    ("chiral", "plain_noflip"),
    ("chiral_mixed", "chiral"),
    ("chiral_mixed", "plain_tta"),
)
"""The paired differences reported, ``a - b``, where both rows exist."""

Row = tuple[str, str, str]
"""``(row name, trained model, "test" or "test_tta")``."""


def rows(trained: Sequence[str]) -> list[Row]:
    """The table's rows: each trained model, and ``plain_tta`` after ``plain``."""
    out = []
    for name in trained:
        out.append((name, name, "test"))
        if name == "plain":
            out.append(("plain_tta", "plain", "test_tta"))
    return out


def per_seed(cells: Mapping[str, dict], row: Row, seeds: Sequence[int], keys: Sequence[str]):
    """One row's ``keys`` for each seed."""
    _, source, key = row
    return [{k: cells[f"{source}_seed{s}"][key][k] for k in keys} for s in seeds]


def summarise(
    cells: Mapping[str, dict],
    trained: Sequence[str],
    seeds: Sequence[int],
    *,
    keys: Sequence[str],
    metric: str,
) -> dict[str, Any]:
    """The table and the paired differences of a comparison.

    Args:
      cells: ``{"<model>_seed<k>": cell results}`` (the module's cell format).
      trained: the models trained, in table order.
      seeds: the seeds run.
      keys: the metrics reported (each in every cell's ``test`` and ``test_tta``).
      metric: the headline metric, whose paired differences are reported (2+ seeds).

    Returns:
      ``{"table": [{"model", "passes", "params", "seeds", <key>: {"mean", "std",
      "n"}}], "differences": {"a - b": paired_difference}, "metric": metric,
      "max_chiral_tta_difference": |metric with TTA - one pass| over the chiral seeds}``.
    """
    table_rows = rows(trained)
    table = []
    for row in table_rows:
        name, source, key = row
        entry = {"model": name, "passes": 2 if key == "test_tta" else 1}
        entry["params"] = cells[f"{source}_seed{seeds[0]}"]["params"]
        entry["seeds"] = len(seeds)
        table.append({**entry, **mean_std_over_seeds(per_seed(cells, row, seeds, keys))})
    by_name = {row[0]: row for row in table_rows}
    differences = {}
    if len(seeds) >= 2:
        for a, b in DIFFERENCES:
            if a in by_name and b in by_name:
                values = [
                    [r[metric] for r in per_seed(cells, by_name[x], seeds, [metric])]
                    for x in (a, b)
                ]
                differences[f"{a} - {b}"] = paired_difference(*values)
    check = [
        abs(cells[f"chiral_seed{s}"]["test_tta"][metric] - cells[f"chiral_seed{s}"]["test"][metric])
        for s in seeds
        if "chiral" in trained
    ]
    return {
        "table": table,
        "differences": differences,
        "metric": metric,
        "max_chiral_tta_difference": max(check) if check else None,
    }


def curves(
    cells: Mapping[str, dict], trained: Sequence[str], seed: int, key: str
) -> dict[str, tuple[list[int], list[float]]]:
    """``{model: (epochs, history[key])}`` of one seed's runs (for a learning-curve plot)."""
    out = {}
    for name in trained:
        history = cells[f"{name}_seed{seed}"]["history"]
        out[name] = ([h["epoch"] for h in history], [h[key] for h in history])
    return out


def run_comparison(
    out: str | os.PathLike,
    config: Mapping[str, Any],
    seeds: Sequence[int],
    variants: Sequence[str],
    settings: Callable[[str], Mapping[str, Any]],
    run_one: Callable[[Run, dict], dict],
    *,
    keys: Sequence[str],
    metric: str,
    curve: tuple[str, str],
    figures: Callable[[Path, dict, dict], list[str]] = lambda folder, cells, summary: [],
    extra: Mapping[str, Any] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    length_keys: frozenset[str] = LENGTH_KEYS,
) -> dict[str, Any]:
    """A comparison under the rerun rule of :mod:`chiral_tasks.common.run`: every model
    of ``variants`` at every seed, one sub-run each, then the summary and the figures.

    Args:
      out: the experiment folder.
      config: what the cells share (task, data, model, training settings).
      seeds, variants: the cells; ``settings(variant)`` is a cell's own config entries.
      run_one: trains and scores one cell, returning the module's cell results.
      keys, metric: as for :func:`summarise`.
      curve: ``(history key, y label)`` of ``learning_curves.png`` (first seed).
      figures: ``figures(folder, cells, summary)`` draws the task's other figures into
        the folder from the cells and :func:`summarise`'s result; returns their file
        names.
      extra: more entries for the results (e.g. the data's sizes).
      resume, overwrite, length_keys: as for :func:`chiral_tasks.common.run.open_run`.

    Returns:
      the results: ``seeds``, :func:`summarise`'s entries, ``per_seed`` (the cells)
      and what :meth:`Run.finish` adds (config, wall time, environment).
    """
    top, cells = run_experiment(
        out, config, grid(seeds, tuple(variants), settings), run_one,
        resume=resume, overwrite=overwrite, length_keys=length_keys,
    )  # fmt: skip
    if top.done:
        return top.results
    key, label = curve
    plot_curves(
        top.folder / "learning_curves.png", curves(cells, variants, seeds[0], key),
        xlabel="epoch", ylabel=label, title=f"Training, seed {seeds[0]}",
    )  # fmt: skip
    summary = summarise(cells, variants, seeds, keys=keys, metric=metric)
    outputs = ["learning_curves.png", *figures(top.folder, cells, summary)]
    results = {**(extra or {}), "seeds": list(seeds), **summary, "per_seed": cells}
    return top.finish(results, outputs=outputs)


def provenance(results: Mapping[str, Any], seconds: float | None = None) -> str:
    """Where a results file's numbers come from: machine, wall time (``seconds``, by
    default the file's ``wall_seconds``), package versions."""
    env = results["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if k != "python")
    seconds = results["wall_seconds"] if seconds is None else seconds
    return f"{env['cpu_count']}-core {env['backend']} machine, {seconds:.0f} s in all; {versions}."


def _mean_std(stats: Mapping[str, float], scale: float, digits: int) -> str:
    spread = f" ± {scale * stats['std']:.{digits}f}" if stats["n"] > 1 else ""
    return f"{scale * stats['mean']:.{digits}f}{spread}"


def markdown(
    results: Mapping[str, Any],
    columns: Mapping[str, str],
    *,
    higher_is_better: bool,
    label: str,
    unit: str,
    setting: str,
    scale: float = 1.0,
    digits: int = 1,
) -> str:
    """A comparison's results as Markdown: the table (mean ± std over seeds, the best
    mean of each column in bold), the paired differences of the headline metric with
    their intervals, and where the numbers come from.

    Args:
      results: a comparison's ``results.json`` (:func:`summarise`'s entries, ``seeds``,
        ``config``, ``environment`` and ``wall_seconds``).
      columns: ``{metric: header}`` of the table.
      higher_is_better: which mean is the best (bold).
      label: the headline metric's name in the text (e.g. ``"MPJPE"``).
      unit: the unit of the differences (e.g. ``"mm"``, ``"points"``).
      setting: the task's words on the model and training (e.g. ``"temporal model,
        60 epochs, batch 256"``).
      scale: shown value = ``scale`` x stored value (e.g. 100 for a fraction in %).
      digits: decimals shown.
    """
    table = results["table"]
    pick = max if higher_is_better else min
    best = {k: pick(row[k]["mean"] for row in table) for k in columns}
    header = ["model", "passes", "params", *columns.values()]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table:
        cells = [row["model"], str(row["passes"]), f"{row['params']:,}"]
        for k in columns:
            text = _mean_std(row[k], scale, digits)
            cells.append(f"**{text}**" if row[k]["mean"] == best[k] else text)
        lines.append("| " + " | ".join(cells) + " |")
    differences = results.get("differences", {})
    if differences:
        better = "higher" if higher_is_better else "lower"
        lines += ["", (
            f"Paired differences of {label} ({unit}, {better} is "
            "better; mean over seeds, per-seed std, 95 % bootstrap interval of the mean):"
        ), ""]  # fmt: skip
        for name, d in differences.items():
            low, high = (scale * v for v in d["ci95"])
            lines.append(
                f"- {name.replace(' - ', ' − ')}: {scale * d['mean']:+.{digits}f} "
                f"(std {scale * d['std']:.{digits}f}; [{low:+.{digits}f}, {high:+.{digits}f}])"
            )
    check = results.get("max_chiral_tta_difference")
    check_text = (
        f"; chiral + TTA differs from chiral by at most {scale * check:.1e} {unit}"
        if check is not None
        else ""
    )
    lines += ["", (
        f"Seeds {', '.join(map(str, results['seeds']))}; {setting}{check_text}. "
        + provenance(results)
    )]  # fmt: skip
    return "\n".join(lines)


def format_text(
    results: Mapping[str, Any],
    columns: Mapping[str, str],
    *,
    label: str,
    unit: str,
    scale: float = 1.0,
    digits: int = 1,
) -> str:
    """The comparison for a terminal: the table (``mean ± std``), then the differences."""
    shown = {"model": "model", "passes": "passes", "params": "params", **columns}
    records = [
        {**row, **{k: _mean_std(row[k], scale, digits) for k in columns}}
        for row in results["table"]
    ]
    lines = [format_table(records, shown)]
    for name, d in results.get("differences", {}).items():
        low, high = (scale * v for v in d["ci95"])
        lines.append(
            f"{label} {name}: {scale * d['mean']:+.{digits}f} {unit} "
            f"(per-seed std {scale * d['std']:.{digits}f}, 95% bootstrap interval "
            f"[{low:+.{digits}f}, {high:+.{digits}f}], {d['n']} seeds)"
        )
    return "\n".join(lines)
