"""The VGG16-BN multi-label network and ImageNet feature initialisation."""

from __future__ import annotations

import pytest
import torch

from classifier.model import (
    ModelConfig,
    VGGMultiLabel,
    create_model,
    load_imagenet_features,
    resolve_device,
)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("size", [32, 64])
def test_output_shape(size, tiny_model):
    """One logit per label and image; in eval mode an image's logits do not depend on the
    other images of its batch, and they do depend on the image."""
    model = tiny_model(num_labels=5, input_size=size)
    images = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(size))
    with torch.no_grad():
        out = model(images)
        alone = torch.cat([model(images[i:i + 1]) for i in range(4)])
    assert out.shape == (4, 5)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, alone, atol=1e-6, rtol=1e-4)
    assert (out[1:] - out[0]).abs().amax(dim=1).min() > 1e-7  # logits start near 0


def test_imagenet_channel_means_are_subtracted(tiny_model):
    """METHOD.md's preprocessing: the network sees the image minus the ImageNet channel
    means. A fresh network (zero biases, batch norm at its initial statistics) maps an
    all-zero input to all-zero logits, so exactly the mean-coloured image scores 0."""
    from classifier.model import IMAGENET_MEAN

    model = tiny_model(num_labels=4)
    mean_image = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand(1, 3, 32, 32)
    with torch.no_grad():
        assert model(mean_image).abs().max() == 0
        assert model(torch.full((1, 3, 32, 32), 0.5)).abs().max() > 1e-6


def test_thirteen_conv_layers_with_batch_norm(tiny_model):
    model = tiny_model()
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in model.features if isinstance(m, torch.nn.BatchNorm2d)]
    pools = [m for m in model.features if isinstance(m, torch.nn.MaxPool2d)]
    assert len(convs) == 13 and len(norms) == 13 and len(pools) == 5


def test_width_scales_channels_and_parameter_count():
    narrow = VGGMultiLabel(ModelConfig(num_labels=3, width=0.125, hidden=16))
    wider = VGGMultiLabel(ModelConfig(num_labels=3, width=0.25, hidden=16))
    assert _count(wider) > 2 * _count(narrow)
    assert wider.config.channels()[0] == 16 and narrow.config.channels()[0] == 8
    assert ModelConfig(num_labels=1, width=1.0).channels()[-2] == 512
    assert min(c for c in ModelConfig(1, width=0.01).channels() if c != "M") == 8


def test_head_size_depends_on_input_size():
    small = VGGMultiLabel(ModelConfig(num_labels=3, input_size=32, width=0.125, hidden=16))
    large = VGGMultiLabel(ModelConfig(num_labels=3, input_size=64, width=0.125, hidden=16))
    assert large.head[1].in_features == 4 * small.head[1].in_features


@pytest.mark.parametrize("size", [30, 48, 100])
def test_input_size_not_multiple_of_32_raises(size):
    with pytest.raises(ValueError, match="multiple of 32"):
        VGGMultiLabel(ModelConfig(num_labels=3, input_size=size, width=0.125))


def test_config_round_trip():
    config = ModelConfig(num_labels=7, input_size=64, width=0.25, hidden=32, dropout=0.1)
    assert ModelConfig(**config.to_dict()) == config


@pytest.fixture(scope="module")
def imagenet_like_file(tmp_path_factory):
    """A width-1.0 state dict standing in for torchvision's vgg16_bn ImageNet weights."""
    torch.manual_seed(11)
    source = VGGMultiLabel(ModelConfig(num_labels=3, input_size=32, width=1.0, hidden=8))
    with torch.no_grad():
        for name, tensor in source.state_dict().items():
            if name.startswith("features.") and tensor.is_floating_point():
                tensor.uniform_(-0.1, 0.1)
    state = source.state_dict()
    path = tmp_path_factory.mktemp("imagenet") / "vgg16_bn.pth"
    torch.save(state, path)
    return path, {k: v.clone() for k, v in state.items() if k.startswith("features.")}


def test_load_imagenet_features_copies_features(imagenet_like_file):
    path, features = imagenet_like_file
    torch.manual_seed(0)
    model = VGGMultiLabel(ModelConfig(num_labels=5, input_size=32, width=1.0, hidden=8))
    head_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("head.")}
    copied = load_imagenet_features(model, path)
    weights = {k: v for k, v in features.items() if v.is_floating_point()}
    assert len(weights) == 13 * 6  # conv weight/bias + BN weight/bias/mean/var
    assert len(weights) <= copied <= len(features)
    own = model.state_dict()
    for name, tensor in weights.items():
        assert torch.equal(own[name], tensor), name
    for name, tensor in head_before.items():  # the head is untouched
        assert torch.equal(own[name], tensor), name


def test_create_model_with_imagenet_weights(imagenet_like_file):
    path, features = imagenet_like_file
    model = create_model(ModelConfig(num_labels=2, input_size=32, width=1.0, hidden=8), path)
    assert torch.equal(model.state_dict()["features.0.weight"], features["features.0.weight"])


def test_load_imagenet_features_rejects_other_widths(imagenet_like_file):
    path, _ = imagenet_like_file
    model = VGGMultiLabel(ModelConfig(num_labels=3, input_size=32, width=0.5, hidden=8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="width"):
        load_imagenet_features(model, path)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_keep_resolution_after_gives_the_last_stage_larger_maps() -> None:
    from classifier.model import ModelConfig, VGGMultiLabel

    plain = VGGMultiLabel(ModelConfig(num_labels=3, width=0.125, hidden=16))
    wide = VGGMultiLabel(ModelConfig(num_labels=3, width=0.125, hidden=16,
                                     keep_resolution_after=4))
    x = torch.rand(2, 3, 32, 32)
    assert plain.features(x).shape[-2:] == (1, 1)
    assert wide.features(x).shape[-2:] == (2, 2)
    assert wide(x).shape == (2, 3)
    # same layer indices, so the same weight names: one can start from the other
    conv_keys = {k for k in plain.state_dict() if k.startswith("features.")}
    assert conv_keys == {k for k in wide.state_dict() if k.startswith("features.")}
    with pytest.raises(ValueError, match="keep_resolution_after"):
        VGGMultiLabel(ModelConfig(num_labels=3, keep_resolution_after=5))


def test_adapted_head_starts_as_average_pooling_then_the_old_head(tmp_path) -> None:
    from classifier.model import ModelConfig, VGGMultiLabel
    from classifier.store import save_network
    from classifier.train import _load_initial_weights

    torch.manual_seed(0)
    plain = VGGMultiLabel(ModelConfig(num_labels=3, width=0.125, hidden=16)).eval()
    save_network(plain, tmp_path / "plain.pt", precision="fp16")
    wide = VGGMultiLabel(ModelConfig(num_labels=3, width=0.125, hidden=16,
                                     keep_resolution_after=4)).eval()
    _load_initial_weights(wide, tmp_path / "plain.pt")
    features = torch.rand(4, wide.head[1].in_features // 4, 2, 2)
    with torch.no_grad():
        pooled = features.mean(dim=(2, 3))
        expected = plain.head[1](pooled)
        got = wide.head[1](features.flatten(1))
    torch.testing.assert_close(got, expected, atol=2e-3, rtol=1e-2)
    other = VGGMultiLabel(ModelConfig(num_labels=3, width=0.25, hidden=16))
    with pytest.raises(ValueError, match="--init-from"):
        _load_initial_weights(other, tmp_path / "plain.pt")
