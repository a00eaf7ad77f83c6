"""Model directory storage and the Predictor API, on a tiny hand-built model directory."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from classifier import Prediction, Predictor, load_predictor
from classifier.dehaze import DehazeParams, dehaze_many
from classifier.postprocess import PostprocessConfig, Postprocessor, fit_postprocessor
from classifier.store import (
    CLASSIFIER_DIRS,
    PIPELINE_FILE,
    ValOutputs,
    load_network,
    read_network_file,
    read_pipeline,
    save_network,
    write_pipeline,
)
from classifier.tta import predict_proba
from imagery.decode import ImageDecodeError, resize_square

LABELS = ["agave", "basalt", "cirrus"]
SIZE = 32


def _spread_head(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give an untrained tiny VGG logits of order 1, so images get different scores."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in (model.head[1], model.head[-1]):
            fan_in = layer.weight.shape[1]
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 3 / fan_in**0.5)
    return model.eval()


def test_save_load_network_round_trip(tmp_path, tiny_model):
    model = _spread_head(tiny_model(num_labels=3, seed=1), seed=1)
    path = tmp_path / "net.pt"
    save_network(model, path)
    blob = torch.load(path, map_location="cpu", weights_only=True)
    assert blob["config"] == model.config.to_dict()
    for name, tensor in blob["state_dict"].items():
        if tensor.is_floating_point():
            assert tensor.dtype == torch.float16, name
        else:
            assert tensor.dtype == model.state_dict()[name].dtype
    loaded = load_network(path, torch.device("cpu"))
    assert loaded.config == model.config
    assert not loaded.training
    for name, tensor in loaded.state_dict().items():
        assert tensor.dtype == model.state_dict()[name].dtype, name
    x = torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = model(x), loaded(x)
    scale = expected.abs().max().item()
    assert scale > 0.1
    torch.testing.assert_close(got, expected, atol=0.02 * scale, rtol=0.02)


def test_val_outputs_round_trip(tmp_path, rng):
    outputs = ValOutputs(["a", "b", "c"], (rng.random((3, 2)) > 0.5).astype(np.float32),
                         {"original_tta1": rng.random((3, 2)), "dehazed_tta8": rng.random((3, 2))})
    path = tmp_path / "val_outputs.npz"
    outputs.save(path)
    loaded = ValOutputs.load(path)
    assert loaded.names == ["a", "b", "c"]
    np.testing.assert_array_equal(loaded.targets, outputs.targets)
    np.testing.assert_allclose(loaded.get("dehazed", 8), outputs.probs["dehazed_tta8"],
                               rtol=1e-6)
    assert loaded.get("original", 8) is None


def test_resolve_model_dir_requires_pipeline(tmp_path):
    with pytest.raises(FileNotFoundError, match=PIPELINE_FILE):
        CLASSIFIER_DIRS.resolve(tmp_path)
    write_pipeline(tmp_path, {"labels": ["x"]})
    assert CLASSIFIER_DIRS.resolve(tmp_path) == tmp_path
    assert read_pipeline(tmp_path) == {"labels": ["x"]}


def _val_outputs(seed: int = 0, n: int = 120):
    """Original network good on agave/cirrus, dehazed network good on basalt."""
    gen = np.random.default_rng(seed)
    y = (gen.random((n, 3)) < 0.4).astype(np.float32)
    good = np.clip(np.where(y > 0, 0.75, 0.25) + gen.normal(0, 0.1, y.shape), 0, 1)
    p_original, p_dehazed = gen.random(y.shape), gen.random(y.shape)
    p_original[:, [0, 2]] = good[:, [0, 2]]
    p_dehazed[:, 1] = good[:, 1]
    return y, p_original, p_dehazed


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from classifier.model import ModelConfig, VGGMultiLabel

    directory = tmp_path_factory.mktemp("model")
    config = ModelConfig(num_labels=len(LABELS), input_size=SIZE, width=0.125, hidden=16)
    for seed, name in enumerate(("original", "dehazed")):
        torch.manual_seed(seed)
        save_network(_spread_head(VGGMultiLabel(config), seed), directory / f"{name}.pt")
    y, p_original, p_dehazed = _val_outputs()
    post = fit_postprocessor(PostprocessConfig(), y, p_original, p_dehazed)
    assert post.use_dehazed.tolist() == [False, True, False]
    write_pipeline(directory, {
        "format": 1, "name": "tiny", "labels": LABELS, "image_size": SIZE,
        "model": config.to_dict(), "dehaze": {}, "postprocess": post.to_dict(),
    })
    return directory


@pytest.fixture(scope="module")
def predictor(model_dir):
    return Predictor(model_dir, device="cpu", batch_size=2)


def _images(seed: int = 0):
    gen = np.random.default_rng(seed)
    shapes = [(32, 32), (40, 56), (100, 64), (20, 20), (64, 64)]
    images = []
    for h, w in shapes:
        base = gen.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        images.append(np.asarray(Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR)))
    return images


def _reference_scores(model_dir, images):
    """The pipeline re-done by hand: resize, dehaze for the dehazed net, 8-view TTA,
    per-label choice, ridge layer."""
    spec = json.loads((model_dir / PIPELINE_FILE).read_text())
    post = Postprocessor.from_dict(spec["postprocess"])
    prepared = np.stack([resize_square(img, SIZE) for img in images])
    dehazed = dehaze_many(prepared, DehazeParams())
    probs = {}
    for name, inputs in (("original", prepared), ("dehazed", dehazed)):
        net = load_network(model_dir / f"{name}.pt", torch.device("cpu"))
        tensor = torch.from_numpy(inputs).permute(0, 3, 1, 2).float() / 255
        probs[name] = predict_proba(net, tensor, views=8).numpy()
    return post.scores(probs["original"], probs["dehazed"]), post


def test_predictor_loads_the_model_directory(predictor):
    assert predictor.labels == LABELS
    assert predictor.image_size == SIZE
    assert set(predictor.networks) == {"original", "dehazed"}
    assert predictor.postprocessor.use_dehazed.tolist() == [False, True, False]
    assert predictor.version.startswith("tiny-")


def test_predict_probabilities_and_tags(predictor, model_dir):
    images = _images()
    results = predictor.predict(images)
    assert len(results) == len(images)
    expected_scores, post = _reference_scores(model_dir, images)
    for result, expected in zip(results, expected_scores):
        assert isinstance(result, Prediction)
        assert list(result.probabilities) == LABELS
        values = np.array([result.probabilities[label] for label in LABELS])
        assert np.all((values >= 0) & (values <= 1))
        np.testing.assert_allclose(values, expected, atol=2e-4)
        # tags are exactly the labels whose score is above its threshold
        assert result.tags == [lab for lab, s, t in zip(LABELS, expected, post.thresholds)
                               if s > t]


def test_tags_follow_thresholds(model_dir):
    base = Predictor(model_dir, device="cpu", batch_size=8)
    images = _images(seed=1) + _images(seed=2)
    outputs = base.network_outputs(base.prepare(images))
    scores = base.postprocessor.scores(outputs.get("original"), outputs.get("dehazed"))
    assert scores.std(axis=0).min() > 1e-3  # images really get different scores
    middle = np.median(scores, axis=0)
    post = replace(base.postprocessor, thresholds=middle)
    results = Predictor(model_dir, device="cpu", batch_size=3, postprocessor=post).predict(images)
    on = np.array([[lab in r.tags for lab in LABELS] for r in results])
    np.testing.assert_array_equal(on, scores > middle)
    assert 0 < on.sum() < on.size


def test_batch_of_different_sizes_matches_one_by_one(predictor):
    images = _images(seed=3)
    together = predictor.predict(images)
    alone = [predictor.predict([img])[0] for img in images]
    for a, b in zip(together, alone):
        assert a.tags == b.tags
        for label in LABELS:
            assert a.probabilities[label] == pytest.approx(b.probabilities[label], abs=2e-4)
    assert predictor.predict([]) == []


def test_predict_files_reports_broken_file_and_predicts_the_rest(predictor, tmp_path):
    images = _images()[:2]
    good = []
    for i, img in enumerate(images):
        path = tmp_path / f"good_{i}.png"
        Image.fromarray(img).save(path)
        good.append(path)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    results = predictor.predict_files([good[0], broken, good[1], tmp_path / "missing.png"])
    assert len(results) == 4
    assert isinstance(results[1], ImageDecodeError)
    assert isinstance(results[3], ImageDecodeError)
    expected = predictor.predict(images)
    for got, want in zip((results[0], results[2]), expected):
        assert isinstance(got, Prediction)
        assert got.tags == want.tags
        assert got.probabilities == pytest.approx(want.probabilities, abs=2e-4)


def test_original_only_model_directory(model_dir, tmp_path):
    """A directory without dehazed.pt works when no label uses the dehazed network."""
    (tmp_path / "original.pt").write_bytes((model_dir / "original.pt").read_bytes())
    spec = read_pipeline(model_dir)
    y, p_original, _ = _val_outputs()
    post = fit_postprocessor(PostprocessConfig(dehaze="original"), y, p_original, None)
    spec["postprocess"] = post.to_dict()
    write_pipeline(tmp_path, spec)
    predictor = load_predictor(tmp_path, device="cpu")
    assert set(predictor.networks) == {"original"}
    results = predictor.predict(_images()[:2])
    assert len(results) == 2 and all(isinstance(r, Prediction) for r in results)


def test_int8_network_files_are_small_and_predict_like_the_original(tmp_path, tiny_model):
    model = _spread_head(tiny_model(num_labels=3, seed=2, width=0.25, hidden=32), seed=2)
    save_network(model, tmp_path / "fp16.pt")
    save_network(model, tmp_path / "int8.pt", precision="int8")
    blob = torch.load(tmp_path / "int8.pt", map_location="cpu", weights_only=True)
    conv = next(k for k, v in blob["state_dict"].items() if v.ndim == 4)
    assert blob["state_dict"][conv].dtype == torch.int8
    assert blob["int8_scales"][conv].shape == (blob["state_dict"][conv].shape[0],)
    assert (tmp_path / "int8.pt").stat().st_size < 0.6 * (tmp_path / "fp16.pt").stat().st_size
    # each weight is within half a quantisation step of the original
    _config, state = read_network_file(tmp_path / "int8.pt")
    original = model.state_dict()[conv]
    step = original.abs().reshape(original.shape[0], -1).amax(1) / 127
    assert ((state[conv] - original).abs().reshape(original.shape[0], -1).amax(1)
            <= step * 0.5 + 1e-7).all()
    assert not torch.equal(state[conv], original)
    loaded = load_network(tmp_path / "int8.pt", torch.device("cpu"))
    x = torch.rand(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, got = torch.sigmoid(model(x)), torch.sigmoid(loaded(x))
    assert (expected - got).abs().max() < 0.02
    with pytest.raises(ValueError, match="precision"):
        save_network(model, tmp_path / "x.pt", precision="int4")


def test_prediction_and_search_do_not_import_the_training_loop():
    code = ("import classifier.predictor, retrieval.store, sys; "
            "print('classifier.train' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
