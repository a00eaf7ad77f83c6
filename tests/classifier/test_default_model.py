"""The shipped default model: what the model card says it is, within the size budget."""

from __future__ import annotations

import json

import numpy as np
import torch

from classifier import load_predictor
from classifier.store import CLASSIFIER_DIRS, ValOutputs

DEFAULT_MODEL_DIR = CLASSIFIER_DIRS.default


def test_default_model_is_the_documented_ensemble() -> None:
    spec = json.loads((DEFAULT_MODEL_DIR / "pipeline.json").read_text())
    assert spec["members"] == {"original": ["original", "original-6", "original-8"],
                               "dehazed": ["dehazed"]}
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file())
    assert size <= 25 * 2**20, f"the default model takes {size / 2**20:.1f} MB"
    blob = torch.load(DEFAULT_MODEL_DIR / "original-8.pt", map_location="cpu", weights_only=True)
    assert blob["config"]["keep_resolution_after"] == 4
    assert any(v.dtype == torch.int8 for v in blob["state_dict"].values())
    # member 0 stays fp16: the search model's default backbone
    blob = torch.load(DEFAULT_MODEL_DIR / "original.pt", map_location="cpu", weights_only=True)
    assert not any(v.dtype == torch.int8 for v in blob["state_dict"].values())


def test_default_model_predicts_with_every_member() -> None:
    predictor = load_predictor("default", device="cpu")
    assert [len(m) for m in predictor.networks.values()] == [3, 1]
    rng = np.random.default_rng(0)
    chips = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    prepared = predictor.prepare(chips)
    both = predictor.network_outputs(prepared, needed=["original"])["original"]
    first = predictor.network_outputs(prepared, needed=["original"], members=1)["original"]
    assert both.shape == first.shape == (3, len(predictor.labels))
    assert not np.allclose(both, first)
    results = predictor.predict(chips)
    assert len(results) == 3 and all(set(r.probabilities) == set(predictor.labels)
                                      for r in results)


def test_stored_validation_outputs_match_the_members() -> None:
    val = ValOutputs.load(DEFAULT_MODEL_DIR / "val_outputs.npz")
    members = val.member_outputs("original", 8)
    assert len(members) == 3
    np.testing.assert_allclose(val.get("original", 8), np.mean(members, axis=0), atol=1e-6)
