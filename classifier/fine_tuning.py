"""Fine-tuning an assembled model on new labelled images: the learning loop's training step.

A fine-tune is the CLI's own commands, run in-process so that a caller can follow it:

1. ``python -m classifier train --init-from BASE/<net>.pt --fine-tune ...`` once per
   network of the base model (same architecture, input size, kind and member seed),
   starting from its weights with its output rows matched to the new labels by name
   (``train.map_label_rows``: labels it knows keep their rows, new labels start fresh);
2. ``python -m classifier assemble NETWORKS --no-test`` over the fine-tuned networks.

Nothing here trains or fits on its own: ``train.main`` and ``assemble.main`` do, from the
argument lists this module writes (and records, so the same model can be rebuilt from a
shell). A stopped fine-tune resumes: finished networks are kept, the running one resumes
from its last epoch's checkpoint (``train.main``), and assembly runs again.

The caller's images are split into train / validation by ``--seed`` (``val_fraction``)
and there is no test split: candidates are compared elsewhere, on images the caller
never gives here (the web app's frozen evaluation set).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from classifier import assemble, train
from classifier.store import CLASSIFIER_DIRS, NETWORKS, member_index, read_pipeline
from classifier.train import TrainingHooks

__all__ = ["FineTuneSettings", "NetworkPlan", "TrainingHooks", "fine_tune", "plan"]


@dataclass(frozen=True)
class FineTuneSettings:
    """A fine-tune's budget: a short cosine restart from trained weights."""

    epochs: int = 4
    lr: float = 2e-4
    patience: int = 2
    batch_size: int = 32
    val_fraction: float = 0.2
    seed: int = 0
    threads: int = 0  # 0: all cores
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NetworkPlan:
    """One network to fine-tune: its name in the base model and its train command."""

    name: str
    argv: list[str]

    @property
    def command(self) -> str:
        return "python -m classifier train " + " ".join(self.argv)


def plan(base: str | Path, labels_csv: Path, images: Path, out: Path, labels: list[str],
         settings: FineTuneSettings) -> list[NetworkPlan]:
    """The train command of every network of the base model, in the model's order."""
    base_dir = CLASSIFIER_DIRS.resolve(base)
    spec = read_pipeline(base_dir)
    plans = []
    for kind in NETWORKS:
        for name in spec["members"].get(kind, []):
            entry = spec["networks"][name]
            model = entry["model"]
            argv = [
                "--labels", str(labels_csv), "--images", str(images), "--out", str(out),
                "--network", kind, "--member", str(member_index(kind, name)),
                "--arch", model.get("arch", "vgg16_bn"), "--size", str(entry["image_size"]),
                "--input-size", str(model["input_size"]), "--width", str(model["width"]),
                "--hidden", str(model["hidden"]), "--dropout", str(model["dropout"]),
                "--keep-resolution-after", str(model.get("keep_resolution_after", 0)),
                "--init-from", str(base_dir / f"{name}.pt"), "--fine-tune",
                "--vocabulary", ",".join(labels),
                "--epochs", str(settings.epochs), "--lr", str(settings.lr),
                "--schedule", "cosine", "--patience", str(settings.patience),
                "--batch-size", str(settings.batch_size),
                "--val-fraction", str(settings.val_fraction), "--test-fraction", "0",
                "--seed", str(settings.seed), "--threads", str(settings.threads),
                "--device", settings.device,
            ]
            plans.append(NetworkPlan(name, argv))
    return plans


def assemble_argv(networks: list[Path], images: Path, out: Path, name: str,
                  settings: FineTuneSettings) -> list[str]:
    return [*map(str, networks), "--images", str(images), "--out", str(out), "--name", name,
            "--no-test", "--threads", str(settings.threads), "--device", settings.device]


def fine_tune(base: str | Path, labels_csv: Path, images: Path, work: Path, name: str,
              labels: list[str], settings: FineTuneSettings,
              hooks_for: Callable[[str], TrainingHooks] | None = None,
              on_assemble: Callable[[], None] | None = None) -> tuple[Path, list[str]]:
    """Fine-tune every network of ``base`` on ``labels_csv`` / ``images`` (networks in
    ``work/networks``), then assemble them into ``work/model``. Returns the model
    directory and the commands that made it. ``hooks_for(network)``: hooks for one
    network's training (they may raise to stop; the next call resumes)."""
    networks = work / "networks"
    plans = plan(base, labels_csv, images, networks, labels, settings)
    commands = [p.command for p in plans]
    done = []
    for network in plans:
        path = networks / f"{network.name}.pt"
        if not (path.exists() and path.with_suffix(".json").exists()):
            args = train.get_args_parser().parse_args(network.argv)
            args.program, args.argv = "classifier", ["train", *network.argv]
            if train.main(args, hooks=hooks_for(network.name) if hooks_for else None) is None:
                raise RuntimeError(f"training of {network.name} paused unexpectedly")
        done.append(path)
    if on_assemble is not None:
        on_assemble()
    model_dir = work / "model"
    argv = assemble_argv(done, images, model_dir, name, settings)
    commands.append("python -m classifier assemble " + " ".join(argv))
    args = assemble.get_args_parser().parse_args(argv)
    args.argv = ["assemble", *argv]
    assemble.main(args)
    return model_dir, commands
