"""``python -m retrieval train``: data -> backbone descriptors -> text vectors -> hashing
networks for each code length -> model directory (with validation MAP).

Shaped like the classifier's ``train`` command (``get_args_parser``, ``main``): the
backbone (``--backbone train``) and each code length's hashing networks write a
resumable checkpoint after every epoch into ``<out>/checkpoints/``, so the same command
continues an interrupted run; ``--max-epochs-this-run`` pauses on purpose. The model
directory carries its words (``retrieval.text.Wording``): ``--stopwords`` and
``--label-words`` are copied into it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from classifier.model import ModelConfig, VGGMultiLabel, resolve_device
from classifier.store import save_network
from classifier.train import TrainConfig, train_network
from imagery.datasets import split_indices, write_labels
from imagery.model_dirs import provenance
from retrieval.data import Collection, load_collection
from retrieval.evaluation import evaluate_codes
from retrieval.features import (
    backbone_file,
    backbone_size,
    describe,
    load_backbone,
)
from retrieval.networks import HashConfig
from retrieval.store import SPEC_FILE, Database, save_hash_model
from retrieval.text import (
    DEFAULT_LABEL_WORDS,
    DEFAULT_STOPWORDS,
    Vocabulary,
    Wording,
    create_encoder,
)
from retrieval.train import METHODS, train_hashing


def get_args_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--labels", required=True, help="Planet-format CSV: image_name,tags")
    parser.add_argument("--captions", default=None,
                        help="CSV image_name,caption (several rows per image); "
                             "without it, texts are made from the tags")
    parser.add_argument("--images", required=True, help="folder or .tar of images")
    parser.add_argument("--out", required=True, help="model directory to write")
    parser.add_argument("--bits", default="16,32,64", help="code lengths, comma-separated")
    parser.add_argument("--method", default="ssah", choices=METHODS)
    parser.add_argument("--text-encoder", default="minilm", choices=("bow", "minilm"))
    parser.add_argument("--stopwords", default=str(DEFAULT_STOPWORDS),
                        help="JSON list of words left out of texts and queries (copied into "
                             "the model)")
    parser.add_argument("--label-words", default=str(DEFAULT_LABEL_WORDS),
                        help="JSON object label -> everyday words, used by texts made from "
                             "tags (copied into the model; default: the Planet labels')")
    parser.add_argument("--backbone", default="train",
                        help="'train' (a VGG16-BN trained here), 'default' (the shipped "
                             "Planet classifier), a classifier model directory, or a "
                             "network file such as another retrieval model's backbone.pt")
    parser.add_argument("--size", type=int, default=64,
                        help="image size for a trained backbone (multiple of 32)")
    parser.add_argument("--backbone-width", type=float, default=0.25)
    parser.add_argument("--backbone-epochs", type=int, default=30)
    parser.add_argument("--backbone-val-fraction", type=float, default=0.1,
                        help="with --backbone train: share of the training items held out "
                             "for the backbone's early stopping (never the --val-fraction "
                             "queries)")
    parser.add_argument("--epochs", type=int, default=60, help="hashing epochs per code length")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--word-dropout", type=float, default=0.5,
                        help="with --text-encoder bow: each caption word dropped with this "
                             "probability per step, so short queries map like whole captions")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="items held out to report validation MAP (not trained on)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None)
    parser.add_argument("--max-epochs-this-run", type=int, default=None,
                        help="stop after this many epochs, backbone and hashing together "
                             "(resume later with the same command)")
    return parser


def backbone_split(n_train: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions among the training items: (those the backbone trains on, those it
    early-stops on). The held-out retrieval queries never take part: choosing the
    backbone's epoch by them would flatter their MAP."""
    if not 0.0 < fraction < 1.0:
        raise SystemExit("--backbone-val-fraction must be between 0 and 1")
    fit, stop = split_indices(n_train, [fraction], seed)
    if not len(stop) or not len(fit):
        raise SystemExit(f"{n_train} training items are too few to hold out "
                         f"{fraction:.0%} for the backbone's early stopping")
    return fit, stop


@dataclass
class EpochBudget:
    """``--max-epochs-this-run`` over every training stage (the backbone, then each code
    length); ``spend`` is the stages' per-epoch callback."""

    left: int | None

    def spend(self, *_: object) -> None:
        if self.left is not None:
            self.left -= 1


def train_backbone(images: np.ndarray, labels: np.ndarray, stop_images: np.ndarray,
                   stop_labels: np.ndarray, out: Path, width: float = 0.25,
                   epochs: int = 30, seed: int = 0,
                   budget: EpochBudget | None = None) -> VGGMultiLabel | None:
    """Train a classifier network on training items, early-stopped on other training
    items (``stop_*``, see ``backbone_split``); saved as out/backbone.pt and returned as
    read back from it: the database codes must come from the weights that ship (fp16),
    not from the fp32 ones in memory, or ``retrieval verify`` and the app re-encode the
    database to slightly different codes. None when ``budget`` paused it."""
    config = ModelConfig(num_labels=labels.shape[1], input_size=images.shape[1], width=width)
    train_config = TrainConfig(epochs=epochs, seed=seed)
    budget = budget or EpochBudget(None)
    model, _history, finished = train_network(
        "backbone", config, train_config, (images, labels), (stop_images, stop_labels),
        out / "checkpoints", resolve_device("cpu"), budget.left, budget.spend)
    if not finished:
        return None
    save_network(model, out / "backbone.pt")
    return load_backbone(out / "backbone.pt")


# what a resumed run may change: nothing else, or its checkpoints would mix two runs
RESUME_MAY_CHANGE = {"threads", "max_epochs_this_run", "name", "argv", "command"}


def check_resumable(out: Path, args: argparse.Namespace) -> None:
    """``out/checkpoints`` continues only the run that started it (same data, split and
    settings); its settings are kept in ``checkpoints/run.json``."""
    settings = {k: v for k, v in sorted(vars(args).items()) if k not in RESUME_MAY_CHANGE}
    folder = out / "checkpoints"
    record = folder / "run.json"
    if record.exists():
        started = json.loads(record.read_text())
        changed = sorted(k for k in settings.keys() | started.keys()
                         if settings.get(k) != started.get(k))
        if changed:
            raise SystemExit(f"{folder} belongs to a run with other settings "
                             f"({', '.join(changed)}): use another --out")
        return
    if folder.exists() and any(folder.iterdir()):
        raise SystemExit(f"{folder} holds checkpoints of an unknown run: use another --out")
    folder.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(settings, indent=1))


def _backbone(args: argparse.Namespace, train: Collection, out: Path,
              budget: EpochBudget) -> tuple[VGGMultiLabel | None, dict]:
    """The image backbone, trained here or copied in, and what the spec says of it."""
    if args.backbone == "train":
        fit, stop = backbone_split(len(train), args.backbone_val_fraction, args.seed)
        print(f"backbone: {len(fit)} training items, early-stopped on {len(stop)} others")
        backbone = train_backbone(train.images[fit], train.labels[fit], train.images[stop],
                                  train.labels[stop], out, args.backbone_width,
                                  args.backbone_epochs, args.seed, budget)
        return backbone, {"backbone_source": "trained",
                          "backbone_val_names": [train.names[i] for i in stop]}
    # a copy, so that retraining the classifier later cannot change this model's codes
    shutil.copyfile(backbone_file(args.backbone), out / "backbone.pt")
    return load_backbone(out / "backbone.pt"), {"backbone_source": str(args.backbone)}


def main(args: argparse.Namespace) -> dict | None:
    """Train (or resume) a model directory; returns its spec, or None when
    ``--max-epochs-this-run`` paused the run (the same command resumes it)."""
    start = time.time()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    check_resumable(out, args)
    bits_list = sorted({int(b) for b in str(args.bits).split(",") if b.strip()})
    wording = Wording.read(args.stopwords, args.label_words)
    size = args.size if args.backbone == "train" else backbone_size(args.backbone)
    data = load_collection(args.labels, args.images, size, args.captions, wording=wording)
    print(f"{len(data)} items, {len(data.label_names)} labels, image size {size}")
    train_idx, val_idx = split_indices(len(data), [args.val_fraction], args.seed)
    train, val = data.subset(train_idx), data.subset(val_idx)
    budget = EpochBudget(args.max_epochs_this_run)

    backbone, backbone_spec = _backbone(args, train, out, budget)
    if backbone is None:
        print("paused while training the backbone; run the same command again to resume")
        return None
    print("image descriptors ...")
    image_x = describe(backbone, data.images)
    encoder = create_encoder(args.text_encoder, wording)
    encoder.fit(train.texts)
    print(f"text vectors ({encoder.name}) ...")
    text_x = encoder.encode(data.texts)

    database = Database(train.names, train.labels, train.texts, {}, {})
    metrics: dict[str, dict[str, float]] = {}
    for bits in bits_list:
        config = HashConfig(bits=bits, method=args.method, epochs=args.epochs, seed=args.seed,
                            batch_size=args.batch_size, lr=args.lr,
                            word_dropout=args.word_dropout if encoder.name == "bow" else 0.0)
        model = train_hashing(image_x[train_idx], text_x[train_idx], train.labels, config,
                              on_epoch=budget.spend,
                              checkpoint=out / "checkpoints" / f"hash_{bits}_last.pt",
                              max_epochs_this_run=budget.left)
        if not model.finished:
            print(f"paused after {len(model.history)} of {args.epochs} epochs at {bits} "
                  "bits; run the same command again to resume")
            return None
        save_hash_model(model, out / f"hash_{bits}.pt")
        database.image_codes[bits] = model.image_codes(image_x[train_idx])
        database.text_codes[bits] = model.text_codes(text_x[train_idx])
        if len(val_idx):
            result = evaluate_codes(model.image_codes(image_x[val_idx]),
                                    model.text_codes(text_x[val_idx]), val.labels,
                                    database.image_codes[bits], database.text_codes[bits],
                                    train.labels)
            metrics[str(bits)] = {k: v for k, v in result.items() if k != "pr"}
            print(f"{bits} bits: validation MAP i2t {result['i2t']:.4f} "
                  f"t2i {result['t2i']:.4f} i2i {result['i2i']:.4f}")
    database.save(out / "database.npz")
    write_labels(out / "val.csv", val.names,
                 [[n for n, on in zip(data.label_names, row) if on] for row in val.labels])
    spec = {
        "format": 1, "name": args.name or out.name, "method": args.method, "bits": bits_list,
        "labels": data.label_names, "image_size": size, "backbone": "backbone.pt",
        **backbone_spec,
        "text_encoder": encoder.to_dict(),
        "words": wording.save(out),
        "vocabulary": Vocabulary.build(train.texts, wording).counts,
        "texts_from": "captions" if args.captions else "tags",
        "n_items": {"train": len(train), "val": len(val)},
        "val_names": val.names,
        "metrics": {"val_map": metrics},
        "training": {**provenance("retrieval", getattr(args, "argv", sys.argv[1:])),
                     "seconds": round(time.time() - start, 1), "epochs": args.epochs},
    }
    (out / SPEC_FILE).write_text(json.dumps(spec, indent=1))
    print(f"wrote {out} in {time.time() - start:.0f} s")
    return spec
