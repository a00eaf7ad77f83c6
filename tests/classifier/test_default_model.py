"""The shipped default model: what the model card says it is, within the size budget."""

from __future__ import annotations

import json

import numpy as np
import torch

from classifier import load_predictor
from classifier.consistency import WEATHER_LABELS, violations
from classifier.efficientnet import packaged_weights
from classifier.store import CLASSIFIER_DIRS, ValOutputs
from imagery.digests import file_sha256

DEFAULT_MODEL_DIR = CLASSIFIER_DIRS.default


def spec() -> dict:
    return json.loads((DEFAULT_MODEL_DIR / "pipeline.json").read_text())


def test_default_model_is_the_documented_model() -> None:
    model = spec()
    members = ["original-1", "original-3"]
    assert model["members"] == {"original": members}
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file())
    assert size <= 40 * 2**20, f"the default model takes {size / 2**20:.1f} MB"
    for name in members:
        efficientnet = model["networks"][name]
        assert efficientnet["model"]["arch"] == "efficientnet_lite0"
        assert efficientnet["model"]["input_size"] == 128
        assert efficientnet["pretrained"]["sha256"] == file_sha256(packaged_weights())
        blob = torch.load(DEFAULT_MODEL_DIR / f"{name}.pt", map_location="cpu",
                          weights_only=True)
        assert {v.dtype for v in blob["state_dict"].values() if v.is_floating_point()} == {
            torch.float16}


def test_default_model_decides_consistent_sets() -> None:
    model = spec()
    assert model["postprocess"]["config"]["consistent"] and model["postprocess"]["rule"]
    assert model["postprocess"]["config"]["calibration"] == "none"  # chosen on validation
    assert model["metrics"]["val"]["violations"] == {
        "two_or_more_weather": 0.0, "no_weather": 0.0, "cloudy_with_land": 0.0}
    predictor = load_predictor("default", device="cpu")
    assert [n.config.arch for n in predictor.networks["original"]] == ["efficientnet_lite0"] * 2
    rng = np.random.default_rng(0)
    chips = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(6)]
    results = predictor.predict(chips)
    assert all(set(r.probabilities) == set(predictor.labels) for r in results)
    decided = np.array([[label in r.tags for label in predictor.labels] for r in results])
    assert violations(decided, predictor.labels) == {
        "two_or_more_weather": 0.0, "no_weather": 0.0, "cloudy_with_land": 0.0}
    assert all(len(set(r.tags) & set(WEATHER_LABELS)) == 1 for r in results)


def test_stored_validation_outputs_are_the_networks() -> None:
    from classifier.evaluation import StoredModel
    from classifier.store import load_postprocessor

    stored = StoredModel.load("default")  # what the validation-CV experiments start from
    assert stored.shipped.post == load_postprocessor(spec()).config
    assert stored.labels == spec()["labels"]
    val = ValOutputs.load(DEFAULT_MODEL_DIR / "val_outputs.npz")
    assert val.get("original", 8).shape == (3238, 17)
    assert val.member_names("original") == ["original-1", "original-3"]
    assert val.get("original", 1) is not None
