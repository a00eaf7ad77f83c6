"""The model directory: everything ``assemble`` writes and the predictor loads, and the
record ``train`` keeps beside each network it writes (``NetworkInfo``).

    pipeline.json     labels, image size, members, fitted post-processing, metrics, and
                      each network's record (``networks``) and the assembling command
    original.pt       network trained on original images   (fp16 or int8 weights + config)
    dehazed.pt        network trained on dehazed images    (fp16 or int8 weights + config)
    original-K.pt     extra ensemble members of a network (optional; pipeline.json's
                      "members" lists them, and a network's probability is their mean)
    val_outputs.npz   validation probabilities of both networks, 1 and 8 TTA views
                      (and of each member), so every ablation can be refitted exactly
                      like the full pipeline
    val.csv, test.csv the validation split and the untouched test split (Planet CSV)
    train_log.csv, learning_curves.png (the networks' own logs, merged)

No pickles are loaded: weights go through ``torch.load(weights_only=True)`` and the
post-processing is JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from classifier.model import ModelConfig, MultiLabelNetwork, create_model
from classifier.model_files import (  # noqa: F401 - re-exported: the store's names
    CLASSIFIER_DIRS,
    NETWORKS,
    PIPELINE_FILE,
    ModelFilesError,
    network_members,
    read_pipeline,
    verify_model_files,
    write_pipeline,
)
from classifier.postprocess import Postprocessor
from imagery.datasets import read_labels

VAL_OUTPUTS_FILE = "val_outputs.npz"


WEIGHT_PRECISIONS = ("fp32", "fp16", "int8")


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output channel: the scale is each channel's largest |w| / 127,
    so the rounding error is at most 0.4% of that channel's range. Conv and linear
    weights feed batch norm or a sigmoid; on Planet chips validation F2 moved by 0.0002,
    but features of inputs far from the training data can move more (see README). A
    network file takes a quarter of fp32 - what lets several ensemble members fit."""
    flat = weight.detach().float().reshape(weight.shape[0], -1)
    scale = flat.abs().amax(dim=1).clamp_min(1e-12) / 127.0
    q = torch.round(flat / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.reshape(weight.shape), scale


def save_network(model: MultiLabelNetwork, path: Path, precision: str = "fp16") -> None:
    """Weights as fp32 (what training writes), fp16 (half the size; the predictor
    computes in fp32 or autocast), or with ``int8`` the conv/linear weights quantised per
    output channel and the rest fp16."""
    if precision not in WEIGHT_PRECISIONS:
        raise ValueError(f"weight precision {precision!r}: use one of {WEIGHT_PRECISIONS}")
    state, scales = {}, {}
    for key, value in model.state_dict().items():
        if precision == "int8" and value.is_floating_point() and value.ndim >= 2:
            state[key], scales[key] = quantize_int8(value)
        else:
            half = value.is_floating_point() and precision != "fp32"
            state[key] = value.half() if half else value
    blob: dict[str, Any] = {"config": model.config.to_dict(), "state_dict": state}
    if scales:
        blob["int8_scales"] = scales
    torch.save(blob, path)


def stored_precision(path: Path) -> str:
    """How a network file stores its weights: ``int8``, ``fp16`` or ``fp32``."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("int8_scales"):
        return "int8"
    floats = [v for v in blob["state_dict"].values() if v.is_floating_point()]
    return "fp16" if floats and all(v.dtype == torch.float16 for v in floats) else "fp32"


def read_network_file(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A saved network's config and its weights back in fp32 (int8 ones dequantised)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    scales = blob.get("int8_scales", {})
    state = {}
    for key, value in blob["state_dict"].items():
        if key in scales:
            shape = (-1,) + (1,) * (value.ndim - 1)
            state[key] = value.float() * scales[key].float().reshape(shape)
        else:
            state[key] = value.float() if value.is_floating_point() else value
    return blob["config"], state


def load_network(path: Path, device: torch.device) -> MultiLabelNetwork:
    config, state = read_network_file(path)
    model = create_model(ModelConfig(**config))
    model.load_state_dict(state)
    return model.to(device).to(memory_format=torch.channels_last).eval()


def member_name(kind: str, member: int) -> str:
    """File stem of ensemble member ``member`` of network ``kind`` (0 is the kind itself)."""
    return kind if member == 0 else f"{kind}-{member}"


def member_index(kind: str, name: str) -> int | None:
    """0 for ``original``, K for ``original-K``; None when ``name`` is no member of ``kind``."""
    if name == kind:
        return 0
    suffix = name[len(kind) + 1:] if name.startswith(f"{kind}-") else ""
    return int(suffix) if suffix.isdigit() else None


@dataclass
class NetworkInfo:
    """What ``train`` knows of a network it wrote, beside it as ``<name>.json``: enough
    for ``assemble`` to check that networks fit together (labels, size, split) and to
    record how each was made. The split itself is the CSVs in the network's folder."""

    name: str
    kind: str
    labels: list[str]
    image_size: int
    model: dict[str, Any]
    train_config: dict[str, Any]
    epochs: int
    best_val_f2_no_tta: float | None
    split: dict[str, Any]
    provenance: dict[str, Any]
    pretrained: dict[str, str] | None = None  # ImageNet weights it started from: file, sha256
    path: Path | None = None

    def write(self, network_file: Path) -> None:
        network_file.with_suffix(".json").write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def read(cls, network_file: Path) -> NetworkInfo:
        network_file = Path(network_file)
        if not network_file.is_file():
            raise SystemExit(f"{network_file}: no such network file")
        sidecar = network_file.with_suffix(".json")
        if sidecar.exists():
            return cls(**json.loads(sidecar.read_text()), path=network_file)
        if (network_file.parent / PIPELINE_FILE).exists():
            return cls._from_model_dir(network_file)
        raise SystemExit(f"{network_file}: no {sidecar.name} beside it (`python -m "
                         "classifier train` writes one; a model directory describes its "
                         f"networks in {PIPELINE_FILE})")

    @classmethod
    def _from_model_dir(cls, network_file: Path) -> NetworkInfo:
        """A network of an assembled model directory: its entry in ``pipeline.json``."""
        spec = read_pipeline(network_file.parent)
        entry = spec.get("networks", {}).get(network_file.stem)
        if entry is None:
            raise SystemExit(f"{network_file}: {network_file.parent / PIPELINE_FILE} "
                             "does not describe it (a model from before `assemble`)")
        fields = set(cls.__dataclass_fields__) - {"path"}
        return cls(**{k: v for k, v in entry.items() if k in fields}, path=network_file)

    def split_names(self, part: str) -> list[str]:
        """Image names of this network's ``val`` or ``test`` split (``train`` too)."""
        if not self.split.get("n_images", {}).get(part, 1):
            return []  # an empty part (e.g. no test split: a candidate compared elsewhere)
        folder = (self.path or Path(".")).parent
        path = folder / f"{part}.csv"
        if not path.exists():
            raise SystemExit(f"{folder}: no {part}.csv, so this network's split is unknown")
        return read_labels(path).names

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "path"}


MEMBER_PREFIX = "member_"


@dataclass
class ValOutputs:
    """Validation probabilities: ``<kind>_tta<views>`` is a network kind's (ensemble-
    averaged) output; ``member_<name>_tta<views>`` each member's own, when a kind has more
    than one."""

    names: list[str]
    targets: np.ndarray
    probs: dict[str, np.ndarray]

    def get(self, network: str, views: int, members: int | None = None,
            only: str | None = None) -> np.ndarray | None:
        """A kind's probabilities; with ``members`` the mean of its first that many; with
        ``only`` (the name of one of its members) that member's own."""
        if only is not None and f"{MEMBER_PREFIX}{only}_tta{views}" in self.probs:
            return self.probs[f"{MEMBER_PREFIX}{only}_tta{views}"]
        if members is not None:
            own = self.member_outputs(network, views)
            if own:
                return np.mean(own[:members], axis=0)
        return self.probs.get(f"{network}_tta{views}")

    def member_outputs(self, network: str, views: int) -> list[np.ndarray]:
        keys = (f"{MEMBER_PREFIX}{name}_tta{views}" for name in self.member_names(network))
        return [self.probs[key] for key in keys if key in self.probs]

    def member_names(self, network: str) -> list[str]:
        """The members with stored outputs, by member index (empty: one network)."""
        found = {member_index(network, key[len(MEMBER_PREFIX):].rsplit("_tta", 1)[0])
                 for key in self.probs if key.startswith(MEMBER_PREFIX)} - {None}
        return [member_name(network, k) for k in sorted(found)]

    def with_members(self, network: str, names: Sequence[str]) -> ValOutputs:
        """These outputs with ``network``'s probability the mean of the named members."""
        probs = dict(self.probs)
        for key in [k for k in probs if k.startswith(f"{network}_tta")]:
            views = key[len(f"{network}_tta"):]
            probs[key] = np.mean([self.probs[f"{MEMBER_PREFIX}{n}_tta{views}"] for n in names],
                                 axis=0)
        return ValOutputs(self.names, self.targets, probs)

    def save(self, path: Path) -> None:
        np.savez_compressed(path, names=np.array(self.names), targets=self.targets,
                            **{k: v.astype(np.float32) for k, v in self.probs.items()})

    @classmethod
    def load(cls, path: Path) -> ValOutputs:
        with np.load(path, allow_pickle=False) as data:
            probs = {k: data[k] for k in data.files if k not in ("names", "targets")}
            return cls([str(n) for n in data["names"]], data["targets"], probs)


def load_postprocessor(spec: dict[str, Any]) -> Postprocessor:
    return Postprocessor.from_dict(spec["postprocess"])
