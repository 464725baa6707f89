"""Writing, tabulating, aggregating and plotting experiment results."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from chiral_tasks.common.files import atomic_path


def to_json(value: Any) -> Any:
    """``value`` with numpy/JAX scalars and arrays turned into Python numbers and lists."""
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, str | bool | int | float) or value is None:
        return value
    if hasattr(value, "__array__") or isinstance(value, np.generic):
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"cannot write an array of dtype {array.dtype} as JSON")
        return array.tolist()
    raise TypeError(f"cannot write a {type(value).__name__} as JSON: {value!r}")


def write_results(path: str | os.PathLike, results: Mapping[str, Any]) -> None:
    """Write ``results`` as indented JSON, atomically, mode 0644 (numpy values converted).

    Non-finite floats are written as ``NaN`` / ``Infinity``, which Python's ``json``
    reads back.
    """
    text = json.dumps(to_json(results), indent=2, sort_keys=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read a results file written by :func:`write_results`."""
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not a valid results file: {err}") from err


def _cell(value: Any, floatfmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | np.floating):
        return format(float(value), floatfmt)
    return str(value)


def format_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | Mapping[str, str],
    *,
    floatfmt: str = ".2f",
) -> str:
    """An aligned plain-text table: one line per row, numbers right-aligned.

    Args:
      rows: the records; a missing entry prints as ``-``.
      columns: the keys to show, or a ``{key: header}`` mapping.
      floatfmt: format spec for floats.

    >>> print(format_table([{"model": "chiral", "mpjpe": 46.81}], ["model", "mpjpe"]))
    model   mpjpe
    ------  -----
    chiral  46.81
    """
    headers = dict(columns) if isinstance(columns, Mapping) else {c: c for c in columns}
    cells = [[_cell(row.get(key), floatfmt) for key in headers] for row in rows]
    numeric = [
        all(isinstance(row.get(key), int | float | np.number) for row in rows if key in row)
        for key in headers
    ]
    widths = [
        max([len(h)] + [len(line[i]) for line in cells]) for i, h in enumerate(headers.values())
    ]

    def line(values):
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(list(headers.values())), line(["-" * w for w in widths])]
    out += [line(c) for c in cells]
    return "\n".join(out)


def mean_std_over_seeds(results: Sequence[Mapping[str, Any]], *, ddof: int = 0) -> dict[str, Any]:
    """Mean and standard deviation of each numeric entry over runs with different seeds.

    Args:
      results: one results dict per seed, all with the same keys (nested dicts
        are aggregated key by key).
      ddof: delta degrees of freedom of the standard deviation (``1`` for the sample
        estimate, which needs at least two runs).

    Returns:
      the same nesting with ``{"mean": m, "std": s, "n": runs}`` for each number;
      non-numeric entries must agree across runs and are kept as they are.

    >>> mean_std_over_seeds([{"mpjpe": 40.0}, {"mpjpe": 42.0}])
    {'mpjpe': {'mean': 41.0, 'std': 1.0, 'n': 2}}
    """
    if not results:
        raise ValueError("mean_std_over_seeds needs at least one result")
    if len(results) <= ddof:
        raise ValueError(f"ddof={ddof} needs more than {ddof} runs, got {len(results)}")
    return _aggregate(results, ddof, "")


def _aggregate(results: Sequence[Mapping[str, Any]], ddof: int, where: str) -> dict[str, Any]:
    keys = list(results[0])
    for i, r in enumerate(results[1:], start=1):
        if set(r) != set(keys):
            raise ValueError(
                f"run {i} has keys {sorted(r)} at {where or 'top level'} but run 0 has "
                f"{sorted(keys)}"
            )
    out = {}
    for key in keys:
        values = [r[key] for r in results]
        name = f"{where}{key}"
        if all(isinstance(v, Mapping) for v in values):
            out[key] = _aggregate(values, ddof, name + ".")
        elif all(
            isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in values
        ):
            array = np.asarray(values, dtype=np.float64)
            out[key] = {
                "mean": float(array.mean()),
                "std": float(array.std(ddof=ddof)),
                "n": len(values),
            }
        elif all(to_json(v) == to_json(values[0]) for v in values):
            out[key] = values[0]
        else:
            raise ValueError(f"entry {name!r} differs across runs and is not numeric: {values}")
    return out


def paired_difference(
    a: Sequence[float], b: Sequence[float], *, resamples: int = 10_000, seed: int = 0
) -> dict[str, Any]:
    """The difference ``a - b`` of two variants run on the same seeds, with its spread.

    Returns ``{"mean", "std", "ci95": [low, high], "n"}``: the mean and standard
    deviation (``ddof=1``) of the per-seed differences, and a 95 % percentile bootstrap
    interval of their mean (``resamples`` resamplings of the seeds with replacement,
    drawn from ``default_rng(seed)``: the same interval on every run).

    >>> d = paired_difference([10.0, 12.0, 11.0], [13.0, 14.0, 15.0])
    >>> d["mean"], d["n"], d["ci95"][1] < 0
    (-3.0, 3, True)
    """
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if diff.ndim != 1 or len(diff) < 2:
        raise ValueError(f"need two equally long sequences of at least 2 values, got {diff.shape}")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {
        "mean": float(diff.mean()),
        "std": float(diff.std(ddof=1)),
        "ci95": [float(low), float(high)],
        "n": len(diff),
    }


MODEL_COLOURS = {
    "chiral": "tab:blue",
    "chiral_mixed": "tab:cyan",
    "plain": "tab:red",
    "plain_tta": "tab:orange",
    "plain_noflip": "tab:brown",
    "truth": "0.5",
}
"""One colour per model in every figure and animation of the tasks: chiral blue, plain
red (orange with test-time flip averaging, brown without flip augmentation)."""


def model_colour(name: str) -> str | None:
    """The colour of a model's curves by its name (e.g. ``"chiral"``, ``"plain_tta"``);
    None (matplotlib's next colour) for other names."""
    return MODEL_COLOURS.get(name)


def plot_curves(
    path: str | os.PathLike,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    title: str = "",
    *,
    logy: bool = False,
) -> None:
    """Plot named ``(x, y)`` curves into a PNG file (matplotlib's Agg backend, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not series:
        raise ValueError("plot_curves needs at least one series")
    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, (x, y) in series.items():
        if len(x) != len(y):
            raise ValueError(f"series {name!r} has {len(x)} x values but {len(y)} y values")
        axes.plot(x, y, label=name, color=model_colour(name))
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if title:
        axes.set_title(title)
    if logy:
        axes.set_yscale("log")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    save_png(figure, path)


def save_png(figure, path: str | os.PathLike) -> None:
    """Write a matplotlib figure to ``path`` as PNG, atomically (parent folders created)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        figure.savefig(f, format="png")
