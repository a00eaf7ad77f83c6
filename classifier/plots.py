"""PNG charts: learning curves, per-label F2 bars, ablation bars, label probabilities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def learning_curves(histories: Mapping[str, Sequence[Mapping[str, float]]], path: Path) -> None:
    fig, (ax_loss, ax_f2) = plt.subplots(1, 2, figsize=(11, 4))
    drawn = [(name, rows) for name, rows in histories.items() if rows]  # --epochs 0: none
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
        if ax.lines:  # a run that only kept networks (--epochs 0) draws none
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def label_bars(per_label: Mapping[str, Mapping[str, float]], path: Path,
               title: str = "per-label F2") -> None:
    labels = list(per_label)
    fig, ax = plt.subplots(figsize=(max(7, 0.55 * len(labels)), 4))
    ax.bar(labels, [per_label[label]["f2"] for label in labels], color="#3a7ca5")
    for i, label in enumerate(labels):
        ax.text(i, per_label[label]["f2"] + 0.01, f"{per_label[label]['f2']:.2f}",
                ha="center", fontsize=7)
    ax.set(ylim=(0, 1.08), ylabel="F2", title=title)
    ax.tick_params(axis="x", rotation=60)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ablation_bars(rows: Sequence[tuple[str, float]], path: Path) -> None:
    names = [r[0] for r in rows]
    values = [r[1] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    ax.barh(names[::-1], values[::-1], color="#6a994e")
    low = max(0.0, min(values) - 0.03)
    for i, value in enumerate(values[::-1]):
        ax.text(value + 0.001, i, f"{value:.4f}", va="center", fontsize=8)
    ax.set(xlim=(low, min(1.0, max(values) + 0.02)), xlabel="sample-averaged F2",
           title="ablation: each stage switched off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
