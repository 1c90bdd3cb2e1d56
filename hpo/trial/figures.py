"""What a trial shows: its confusion matrix (PNG + JSON) and learning curves (PNG), as files.

Pure functions from numbers to files: no Optuna, no torch. Drawn with matplotlib's object API
on the Agg canvas (`matplotlib.figure.Figure`, never pyplot), so no global backend is switched
and no window is opened; the objective uploads the files as trial artifacts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..metrics import per_class_recall
from .artifact_kinds import CONFUSION_JSON, CONFUSION_PNG, CURVES_PNG

__all__ = [
    "confusion_summary",
    "draw_confusion",
    "draw_curves",
    "write_trial_figures",
]

_DPI = 80


def confusion_summary(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], *, epoch: int | None = None
) -> dict[str, Any]:
    """The matrix with its class names, per-class precision, recall and support, and accuracy.

    Rows are true classes, columns predicted. A class never predicted has precision None; a class
    absent from the labels has recall None (not 0: nothing was missed).

    Raises:
        ValueError: the matrix is not square or its size differs from the number of names.
    """
    m = [[int(v) for v in row] for row in matrix]
    n = len(class_names)
    recall = per_class_recall(m, class_names)  # checks the shape
    support = [sum(row) for row in m]
    predicted = [sum(m[i][j] for i in range(n)) for j in range(n)]
    total = sum(support)
    per_class = {
        name: {
            "precision": m[i][i] / predicted[i] if predicted[i] else None,
            "recall": recall[name],
            "support": support[i],
        }
        for i, name in enumerate(class_names)
    }
    return {
        "epoch": epoch,
        "class_names": list(class_names),
        "matrix": m,
        "accuracy": sum(m[i][i] for i in range(n)) / total if total else None,
        "total": total,
        "per_class": per_class,
    }


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI)


def _margins(fig, width: float, height: float, *, left: float, bottom: float, top: float,
             right: float, wspace: float = 0.2) -> None:
    """Fixed margins in inches: tight_layout would draw the figure once more (half the cost)."""
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                        top=1 - top / height, wspace=wspace)


def draw_confusion(summary: dict[str, Any], path: Path, *, title: str = "") -> Path:
    """Counts in each cell, shading by row share (recall), per-class recall on the y labels."""
    import numpy as np

    names = summary["class_names"]
    m = np.asarray(summary["matrix"], dtype=np.float64)
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    n = len(names)
    side = max(4.0, 0.55 * n + 2.5)
    fig = _figure(side + 1.2, side)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    _margins(fig, side + 1.2, side, left=1.6, bottom=1.2, top=0.6, right=1.1)
    for i in range(n):
        for j in range(n):
            if m[i, j]:
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
    recall = [summary["per_class"][c]["recall"] for c in names]
    ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), [f"{c} ({r:.0%})" if r is not None else f"{c} (-)"
                             for c, r in zip(names, recall)], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (recall)")
    acc = summary.get("accuracy")
    head = f"accuracy {acc:.3f} on {summary['total']} images" if acc is not None else "no images"
    epoch = summary.get("epoch")
    ax.set_title("\n".join(t for t in (title, head + (f", after epoch {epoch + 1}" if epoch is not None
                                                      else "")) if t), fontsize=9)
    fig.savefig(path)
    return Path(path)


def draw_curves(history: Sequence[Any], path: Path, *, title: str = "") -> Path:
    """Train/val loss (left) and val accuracy/macro-F1 (right) per epoch (1-based on the axis)."""
    epochs = [m.epoch + 1 for m in history]
    fig = _figure(8.0, 3.2)
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [m.train_loss for m in history], "o-", label="train loss")
    loss_ax.plot(epochs, [m.val_loss for m in history], "s-", label="val loss")
    acc_ax.plot(epochs, [m.val_acc for m in history], "o-", label="val acc")
    acc_ax.plot(epochs, [m.val_macro_f1 for m in history], "s-", label="val macro-F1")
    acc_ax.set_ylim(0.0, 1.0)
    for ax in (loss_ax, acc_ax):
        ax.set_xlabel("epoch")
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    _margins(fig, 8.0, 3.2, left=0.6, bottom=0.5, top=0.45 if title else 0.2, right=0.2,
             wspace=0.25)
    fig.savefig(path)
    return Path(path)


def write_trial_figures(
    out_dir: Path,
    history: Sequence[Any],
    class_names: Sequence[str],
    *,
    epoch: Any | None = None,
    title: str = "",
) -> list[Path]:
    """Confusion matrix PNG + JSON of `epoch` (an EpochMetrics with `confusion`) and the curves.

    Args:
        history: the EpochMetrics of every epoch trained (may be empty: no curves then).
        epoch: the epoch whose confusion counts to draw (default: the last of `history`); none
            when it carries no counts.

    Returns:
        The files written, in `out_dir`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    epoch = epoch if epoch is not None else (history[-1] if history else None)
    written: list[Path] = []
    if epoch is not None and getattr(epoch, "confusion", None) is not None:
        summary = confusion_summary(epoch.confusion, class_names, epoch=epoch.epoch)
        as_json = out_dir / CONFUSION_JSON.filename()
        as_json.write_text(json.dumps(summary, indent=1) + "\n")
        written += [draw_confusion(summary, out_dir / CONFUSION_PNG.filename(), title=title),
                    as_json]
    if history:
        written.append(draw_curves(history, out_dir / CURVES_PNG.filename(), title=title))
    return written
