"""The recognition pipeline at prediction time; the API the web app and CLI call.

    predictor = load_predictor("default")          # once per process
    results = predictor.predict([rgb_uint8, ...])   # one forward pass per chunk

Per chunk: resize to the model's image size -> dehaze (only when some label uses the
dehazed network) -> 8 dihedral TTA views through each needed network in one pass (and
through each of its ensemble members, averaged) -> per-label choice -> ridge layer ->
thresholds. ``batch_size`` is the forward-pass batch: a chunk of that many images is one
pass per network. With ``features=True`` each result also carries the hidden-layer
descriptor of the first original-image network (view 0) from that same pass, which the
search model's image codes are made of when it builds on that network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from classifier.dehaze import DehazeParams, dehaze_many
from classifier.inference import predict_batches, predict_with_embeddings
from classifier.model import MultiLabelNetwork, resolve_device
from classifier.novelty import load_novelty
from classifier.postprocess import Postprocessor
from classifier.store import (
    CLASSIFIER_DIRS,
    load_network,
    load_postprocessor,
    network_members,
    read_pipeline,
    verify_model_files,
)
from imagery.decode import ImageDecodeError, decode_image, resize_square
from imagery.digests import file_sha256


@dataclass
class Prediction:
    """Per-label scores in [0, 1] (after recalibration), the predicted tags, and how sure
    the least certain label decision is (0: a score sits on its threshold, 1: every score
    is as far from its threshold as it can be). Review queues sort by it."""

    probabilities: dict[str, float]
    tags: list[str]
    confidence: float = 1.0
    features: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: out-of-distribution score in units of the model's threshold (classifier.novelty:
    #: above 1 is unusual, as 1% of chips like the training imagery); None without one
    novelty: float | None = None
    unusual: bool | None = None


def decision_confidence(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per image, the smallest normalised distance of a score from its label's threshold."""
    t = np.clip(np.asarray(thresholds, dtype=np.float64), 1e-6, 1 - 1e-6)
    s = np.asarray(scores, dtype=np.float64)
    margin = np.where(s >= t, (s - t) / (1 - t), (t - s) / t)
    return np.clip(margin, 0.0, 1.0).min(axis=1)


class Predictor:
    def __init__(self, model_dir: str | Path = "default", device: str = "auto",
                 batch_size: int = 64, tta_views: int = 8, amp: bool | None = None,
                 postprocessor: Postprocessor | None = None) -> None:
        self.model_dir = CLASSIFIER_DIRS.resolve(model_dir)
        self.spec = read_pipeline(self.model_dir)
        self.labels: list[str] = self.spec["labels"]
        self.image_size: int = self.spec["image_size"]
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.tta_views = tta_views
        self.amp = self.device.type == "cuda" if amp is None else amp
        self.postprocessor = postprocessor or load_postprocessor(self.spec)
        self.dehaze_params = DehazeParams(**self.spec.get("dehaze", {}))
        # network kind -> its ensemble members (member 0 first)
        #: network kind -> file stems of its members (member 0 first)
        self.member_names = network_members(self.model_dir, self.spec)
        verify_model_files(self.model_dir, self.spec)
        self.networks: dict[str, list[MultiLabelNetwork]] = {
            kind: [load_network(self.model_dir / f"{name}.pt", self.device) for name in names]
            for kind, names in self.member_names.items()}
        self.version = CLASSIFIER_DIRS.version(self.model_dir)
        first = network_members(self.model_dir, self.spec)["original"][0]
        #: sha256 of the network file whose descriptors ``features=True`` returns
        self.feature_network_digest = file_sha256(self.model_dir / f"{first}.pt")
        self.novelty = load_novelty(self.model_dir)

    @property
    def is_ensemble(self) -> bool:
        return any(len(members) > 1 for members in self.networks.values())

    def prepare(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Resize decoded RGB uint8 images to the model's size and stack them."""
        size = self.image_size
        if not len(images):
            return np.zeros((0, size, size, 3), np.uint8)
        return np.stack([resize_square(img, size) for img in images])

    def network_outputs(self, prepared: np.ndarray, views: int | None = None,
                        needed: Sequence[str] | None = None,
                        members: int | None = None) -> dict[str, np.ndarray]:
        """Probabilities of each needed network on prepared images: TTA-averaged, then
        averaged over the network's ensemble members (the first ``members`` of them)."""
        return self._outputs(prepared, views, needed, members)[0]

    def _outputs(self, prepared: np.ndarray, views: int | None = None,
                 needed: Sequence[str] | None = None, members: int | None = None,
                 features: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        views = self.tta_views if views is None else views
        if needed is None:
            post = self.postprocessor
            needed = [n for n, use in (("original", post.needs_original),
                                       ("dehazed", post.needs_dehazed)) if use]
        out, descriptors = {}, None
        if features and "original" not in needed:  # descriptors only: member 0, view 0
            descriptors = predict_with_embeddings(self.networks["original"][0], prepared,
                                                  self.device, 1, self.batch_size, self.amp)[1]
        for name in needed:
            inputs = dehaze_many(prepared, self.dehaze_params) if name == "dehazed" else prepared
            runs = []
            for index, net in enumerate(self.networks[name][:members]):
                if features and name == "original" and index == 0:
                    probs, descriptors = predict_with_embeddings(
                        net, inputs, self.device, views, self.batch_size, self.amp)
                else:
                    probs = predict_batches(net, inputs, self.device, views, self.batch_size,
                                            self.amp)
                runs.append(probs)
            out[name] = np.mean(runs, axis=0)
        return out, descriptors

    def member_outputs(self, prepared: np.ndarray, views: int | None = None
                       ) -> dict[str, dict[str, np.ndarray]]:
        """Kind -> member name -> that member's TTA-averaged probabilities (every
        network, for evaluation: what ``network_outputs`` averages)."""
        views = self.tta_views if views is None else views
        out: dict[str, dict[str, np.ndarray]] = {}
        for kind, names in self.member_names.items():
            inputs = dehaze_many(prepared, self.dehaze_params) if kind == "dehazed" else prepared
            out[kind] = {name: predict_batches(net, inputs, self.device, views,
                                               self.batch_size, self.amp)
                         for name, net in zip(names, self.networks[kind])}
        return out

    def predict(self, images: Sequence[np.ndarray], features: bool = False) -> list[Prediction]:
        """Tags and per-label scores for decoded RGB uint8 images of any size, one forward
        pass per network for each ``batch_size`` images; with ``features`` each result
        carries its descriptor (see the module docstring)."""
        results: list[Prediction] = []
        for start in range(0, len(images), self.batch_size):
            outputs, descriptors = self._outputs(
                self.prepare(images[start:start + self.batch_size]),
                features=features or self.novelty is not None)
            scores = self.postprocessor.scores(outputs.get("original"), outputs.get("dehazed"))
            decided = self.postprocessor.decide(scores)
            confidence = decision_confidence(scores, self.postprocessor.thresholds)
            novelty = (self.novelty.relative(descriptors) if self.novelty is not None
                       else [None] * len(scores))
            for i, (row, tags, sure) in enumerate(zip(scores, decided, confidence)):
                results.append(Prediction(
                    {label: round(float(p), 4) for label, p in zip(self.labels, row)},
                    [label for label, on in zip(self.labels, tags) if on],
                    round(float(sure), 4),
                    descriptors[i] if features and descriptors is not None else None,
                    None if novelty[i] is None else round(float(novelty[i]), 4),
                    None if novelty[i] is None else bool(novelty[i] > 1.0)))
        return results

    def predict_files(self, paths: Sequence[str | Path]) -> list[Prediction | ImageDecodeError]:
        """Like ``predict`` for files; an unreadable file yields its error, the rest go on."""
        decoded: dict[int, np.ndarray] = {}
        errors: dict[int, ImageDecodeError] = {}
        for i, path in enumerate(paths):
            try:
                decoded[i] = decode_image(path)
            except ImageDecodeError as exc:
                errors[i] = exc
        predicted = dict(zip(decoded, self.predict(list(decoded.values()))))
        return [predicted[i] if i in predicted else errors[i] for i in range(len(paths))]


def load_predictor(model: str | Path = "default", threads: int = 0,
                   **options: object) -> Predictor:
    """Load a model directory once; reuse the predictor for every batch. ``threads``:
    torch's intra-op threads in this process (0: torch's default, one per core)."""
    if threads:
        torch.set_num_threads(threads)
    return Predictor(model, **options)  # type: ignore[arg-type]
