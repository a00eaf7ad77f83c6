"""The PNG charts of both libraries: the classifier's learning curves, per-label F2 and
ablation bars, and the retrieval model's precision-recall curves.

matplotlib is imported on first use, with the file-only Agg backend: training and
evaluation run on machines without a display, and nothing else pays for the import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def learning_curves(histories: Mapping[str, Sequence[Mapping[str, float]]], path: Path) -> None:
    fig, (ax_loss, ax_f2) = _pyplot().subplots(1, 2, figsize=(11, 4))
    drawn = [(name, rows) for name, rows in histories.items() if rows]
    for i, (name, rows) in enumerate(drawn):
        epochs, color = [r["epoch"] for r in rows], f"C{i % 10}"  # one colour per network
        ax_loss.plot(epochs, [r["train_loss"] for r in rows], "-o", color=color,
                     label=f"{name} train")
        ax_loss.plot(epochs, [r["val_loss"] for r in rows], "--o", color=color, alpha=0.6,
                     label=f"{name} val (BCE)")
        ax_f2.plot(epochs, [r["val_f2"] for r in rows], "-o", color=color, label=f"{name} val F2")
    ax_loss.set(title="loss", xlabel="epoch")
    ax_f2.set(title="validation F2 (tuned thresholds, no TTA)", xlabel="epoch")
    for ax in (ax_loss, ax_f2):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    _save(fig, path)


def label_bars(per_label: Mapping[str, Mapping[str, float]], path: Path,
               title: str = "per-label F2") -> None:
    labels = list(per_label)
    fig, ax = _pyplot().subplots(figsize=(max(7, 0.55 * len(labels)), 4))
    ax.bar(labels, [per_label[label]["f2"] for label in labels], color="#3a7ca5")
    for i, label in enumerate(labels):
        ax.text(i, per_label[label]["f2"] + 0.01, f"{per_label[label]['f2']:.2f}",
                ha="center", fontsize=7)
    ax.set(ylim=(0, 1.08), ylabel="F2", title=title)
    ax.tick_params(axis="x", rotation=60)
    _save(fig, path)


def ablation_bars(rows: Sequence[tuple[str, float]], path: Path) -> None:
    names = [r[0] for r in rows]
    values = [r[1] for r in rows]
    fig, ax = _pyplot().subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    ax.barh(names[::-1], values[::-1], color="#6a994e")
    low = max(0.0, min(values) - 0.03)
    for i, value in enumerate(values[::-1]):
        ax.text(value + 0.001, i, f"{value:.4f}", va="center", fontsize=8)
    ax.set(xlim=(low, min(1.0, max(values) + 0.02)), xlabel="sample-averaged F2",
           title="ablation: each stage switched off")
    _save(fig, path)


def pr_curves(results: Mapping[int, Mapping[str, Any]], path: Path, title: str) -> None:
    """Retrieval: one panel per task, one curve per code length (``evaluate_codes``)."""
    tasks = ["i2t", "t2i", "i2i"]
    fig, axes = _pyplot().subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.8))
    for ax, task in zip(axes, tasks):
        for bits, result in sorted(results.items()):
            precision, recall = result["pr"][task]
            ax.plot(recall, precision, marker=".", label=f"{bits} bits (MAP {result[task]:.3f})")
        ax.set_title({"i2t": "image -> text", "t2i": "text -> image",
                      "i2i": "image -> image"}[task])
        ax.set_xlabel("recall (Hamming radius 0..K)")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    fig.suptitle(title)
    _save(fig, path)
