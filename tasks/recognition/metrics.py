"""Classification metrics for action recognition: top-k accuracy, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chiral_tasks.common.results import save_png


def _check_labels(labels, num_classes: int, name: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"{name} must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{name} must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]"
        )
    return labels


def topk_accuracy(logits, labels, k: int = 1) -> float:
    """Fraction of samples whose true class is among the ``k`` highest scores.

    Ties count against the prediction: the true class's rank is the number of
    other classes scoring at least as high, and it is a hit when that rank is
    below ``k``. (So constant logits score 0 top-1, never 100%.)

    Args:
      logits: (N, K) class scores.
      labels: (N,) integer classes in [0, K).
      k: how many top classes count, 1 <= k <= K.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise ValueError(f"logits must have shape (N, K) with N > 0, got {logits.shape}")
    n, num_classes = logits.shape
    labels = _check_labels(labels, num_classes)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
    if not 1 <= k <= num_classes:
        raise ValueError(f"k must lie in [1, {num_classes}], got {k}")
    if not np.all(np.isfinite(logits)):
        raise ValueError("logits hold NaN or infinite values")
    true_score = logits[np.arange(n), labels][:, None]
    rank = (logits >= true_score).sum(axis=1) - 1
    return float(np.mean(rank < k))


def confusion_matrix(pred, labels, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts: row = true class, column = predicted class."""
    labels = _check_labels(labels, num_classes)
    pred = _check_labels(pred, num_classes, name="pred")
    if pred.shape != labels.shape:
        raise ValueError(f"pred shape {pred.shape} differs from labels shape {labels.shape}")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, pred), 1)
    return matrix


def plot_confusion(
    path, matrix, class_names: Sequence[str], *, title: str = "", max_named: int = 40
) -> None:
    """Saves a confusion matrix as a PNG, each row normalised to sum to 1.

    Rows are true classes, columns predicted ones. Axis ticks carry the class
    names up to ``max_named`` classes; beyond that they would be unreadable and
    are left off. ``title`` (e.g. the model and its top-1) heads the figure, above the
    note that rows are normalised.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix)
    num_classes = len(class_names)
    if matrix.shape != (num_classes, num_classes):
        raise ValueError(
            f"matrix must be ({num_classes}, {num_classes}) for {num_classes} class names, "
            f"got {matrix.shape}"
        )
    totals = matrix.sum(axis=1, keepdims=True)
    rates = matrix / np.maximum(totals, 1)
    size = min(4 + 0.25 * num_classes, 40)
    fig = Figure(figsize=(size, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(rates, vmin=0, vmax=1, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    note = "rows normalised: the share of each true class predicted as each class"
    ax.set_title(f"{title}\n{note}" if title else note, fontsize=9)
    if num_classes <= max_named:
        ticks = np.arange(num_classes)
        ax.set_xticks(ticks, labels=class_names, rotation=90)
        ax.set_yticks(ticks, labels=class_names)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    save_png(fig, path)
