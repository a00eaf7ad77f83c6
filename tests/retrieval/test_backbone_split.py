"""``python -m retrieval train --backbone train`` chooses the backbone's epoch on training
items only: early stopping on the held-out retrieval queries would flatter their MAP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retrieval import pipeline
from retrieval.cli import main
from retrieval.data import load_collection
from tests.retrieval.items import TINY_MODEL, write_items


def test_the_backbone_early_stops_on_training_items_never_on_the_queries(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_items(tmp_path)
    seen: dict[str, np.ndarray] = {}
    real = pipeline.train_network

    def recording(name, model_config, config, train, val, *args, **kwargs):
        seen["fit"], seen["stop"] = train[0].copy(), val[0].copy()
        return real(name, model_config, config, train, val, *args, **kwargs)

    monkeypatch.setattr(pipeline, "train_network", recording)
    out = tmp_path / "model"
    assert main(["train", "--labels", str(data["labels"]), "--captions", str(data["captions"]),
                 "--images", str(data["images"]), "--out", str(out), *TINY_MODEL]) == 0

    spec = json.loads((out / "retrieval.json").read_text())
    items = load_collection(data["labels"], data["images"], 32, data["captions"],
                            progress=False)
    name_of = {image.tobytes(): name for name, image in zip(items.names, items.images)}
    assert len(name_of) == len(items)  # every chip is distinct
    fit = {name_of[image.tobytes()] for image in seen["fit"]}
    stop = {name_of[image.tobytes()] for image in seen["stop"]}
    queries = set(spec["val_names"])
    assert not stop & queries, "the backbone early-stopped on retrieval queries"
    assert not fit & queries and not fit & stop
    assert len(queries) == 20 and len(fit) + len(stop) == 60
    assert len(stop) == 6 and sorted(stop) == sorted(spec["backbone_val_names"])
