"""Evaluation with every stage switchable, so each stage's contribution is measured on
the same images: ``evaluate`` runs one configuration, ``report`` runs the ablation set.

Network outputs are computed once per TTA setting and shared by all configurations.
A configuration other than the shipped one is refitted on the validation outputs stored
in the model directory, exactly as training fitted the shipped one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import KFold
from tqdm import tqdm

from classifier.consistency import violations
from classifier.metrics import (
    f2_score,
    fbeta_per_sample,
    paired_bootstrap,  # noqa: F401 - re-exported
    per_label_scores,
)
from classifier.postprocess import PostprocessConfig, Postprocessor, fit_postprocessor
from classifier.predictor import Predictor
from classifier.store import CLASSIFIER_DIRS, VAL_OUTPUTS_FILE, ValOutputs, read_pipeline
from imagery.datasets import load_images, read_labels


@dataclass(frozen=True)
class Setting:
    """One evaluated configuration: TTA views plus the post-processing stages."""

    name: str
    views: int = 8
    post: PostprocessConfig = PostprocessConfig()
    members: int | None = None  # None: every ensemble member; 1: member 0 of each network
    network: str | None = None  # one member alone in place of its kind's ensemble


_COMBINE = {"per-label": "per-label choice", "stack": "both networks stacked",
            "original": "original network", "dehazed": "dehazed network"}


def ablations(shipped: PostprocessConfig, ensemble: bool = False,
              consistent: bool = False, alone: Sequence[tuple[str, str]] = (),
              dehazed: bool = True) -> list[Setting]:
    """The full pipeline as shipped, then each stage switched off or swapped on its own
    (``ensemble``: the model has several members of a network, so also one of each;
    ``consistent``: its tag sets follow a rule, so also without it; ``alone``: (member,
    description) pairs, each member scored alone in place of its kind's ensemble;
    ``dehazed``: the model has a dehazed network; without one, the rows that drop, keep
    or stack it are left out: there is nothing to switch)."""
    if shipped.dehaze == "stack":
        swap = Setting("per-label model choice instead of stacking (the paper)",
                       post=replace(shipped, dehaze="per-label"))
    else:
        swap = Setting("stacking both networks instead of the per-label choice",
                       post=replace(shipped, dehaze="stack"))
    single = [Setting("no ensemble (one network of each kind)", post=shipped, members=1),
              *(Setting(f"{name} alone ({what}) instead of its ensemble", post=shipped,
                        network=name) for name, what in alone)]
    return [
        Setting(f"full pipeline (TTA8, {_COMBINE[shipped.dehaze]}, {shipped.calibration}, "
                "tuned thresholds" + (", consistent sets)" if consistent else ")"),
                post=shipped),
        Setting("no TTA", views=1, post=shipped),
        *(single if ensemble else []),
        *([Setting("no dehazed model (original only)",
                   post=replace(shipped, dehaze="original")),
           Setting("dehazed model only", post=replace(shipped, dehaze="dehazed")),
           swap] if dehazed else []),
        *_layer_swaps(shipped),
        Setting("fixed threshold 0.2", post=replace(shipped, thresholds=0.2)),
        Setting("expected-F2 decision instead of thresholds",
                post=replace(shipped, decision="expected-f2")),
        *([Setting("no consistent tag sets (thresholds only)",
                   post=replace(shipped, consistent=False))] if consistent else []),
        Setting("bare network (original, no TTA, no layer, threshold 0.5)", views=1,
                post=PostprocessConfig(dehaze="original", calibration="none", thresholds=0.5,
                                       consistent=False),
                members=1),
    ]


def _layer_swaps(shipped: PostprocessConfig) -> list[Setting]:
    """The recalibration layer switched off and swapped, or, for a model shipped without
    one, each layer switched on."""
    if shipped.calibration == "none":
        return [Setting("with the ridge layer (the paper's)",
                        post=replace(shipped, calibration="ridge")),
                Setting("with a lasso layer", post=replace(shipped, calibration="lasso"))]
    other = "lasso" if shipped.calibration == "ridge" else "ridge"
    return [Setting("no recalibration layer", post=replace(shipped, calibration="none")),
            Setting(f"{other} instead of {shipped.calibration}",
                    post=replace(shipped, calibration=other))]


class Evaluator:
    def __init__(self, predictor: Predictor, labels_csv: str | Path, images: str | Path,
                 progress: bool = True) -> None:
        self.predictor = predictor
        table = read_labels(labels_csv)
        unknown = sorted(set(table.vocabulary()) - set(predictor.labels))
        if unknown:
            print(f"note: tags unknown to the model are ignored: {unknown}")
        self.data = load_images(table, images, predictor.image_size, predictor.labels, progress)
        if not len(self.data.names):
            raise SystemExit("no readable images to evaluate")
        self.val = ValOutputs.load(predictor.model_dir / VAL_OUTPUTS_FILE)
        self._outputs: dict[int, dict[str, dict[str, np.ndarray]]] = {}

    def outputs(self, views: int, members: int | None = None,
                only: str | None = None) -> dict[str, np.ndarray]:
        """Each kind's probability: the mean of its first ``members`` members, or the
        member named ``only`` where it is one of them. Every member runs once per
        ``views``; the settings share those outputs."""
        if views not in self._outputs:
            self._outputs[views] = self.predictor.member_outputs(self.data.images, views)
        out = {}
        for kind, runs in self._outputs[views].items():
            chosen = [only] if only in runs else list(runs)[:members]
            out[kind] = np.mean([runs[name] for name in chosen], axis=0)
        return out

    def postprocessor(self, setting: Setting) -> Postprocessor:
        shipped = self.predictor.postprocessor
        if (setting.post == shipped.config and setting.views == 8 and setting.members is None
                and setting.network is None):
            return shipped
        return fit_postprocessor(
            setting.post, self.val.targets,
            *(self.val.get(kind, setting.views, setting.members, setting.network)
              for kind in ("original", "dehazed")), labels=self.predictor.labels)

    def run(self, setting: Setting) -> dict[str, Any]:
        post = self.postprocessor(setting)
        outputs = self.outputs(setting.views, setting.members, setting.network)
        scores = post.scores(outputs.get("original"), outputs.get("dehazed"))
        decided = post.decide(scores)
        y = self.data.targets
        return {"setting": setting.name, "f2": f2_score(y, decided),
                "per_image": fbeta_per_sample(y, decided),
                "n_images": int(len(y)), "skipped": self.data.errors,
                "per_label": per_label_scores(y, decided, self.predictor.labels),
                "violations": violations(decided, self.predictor.labels),
                "use_dehazed": [lab for lab, u in zip(self.predictor.labels, post.use_dehazed)
                                if u]}


def per_label_table(per_label: dict[str, dict[str, float]]) -> str:
    lines = ["| label | F2 | precision | recall | support |", "|---|---:|---:|---:|---:|"]
    for label, s in per_label.items():
        lines.append(f"| {label} | {s['f2']:.3f} | {s['precision']:.3f} | {s['recall']:.3f} "
                     f"| {s['support']} |")
    return "\n".join(lines)


@dataclass(frozen=True)
class StoredModel:
    """What a validation-CV experiment starts from: a model's stored validation outputs,
    its own post-processing as a ``Setting`` (the default stages for a spec without one)
    and its labels (which give the tag-set rule)."""

    val: ValOutputs
    shipped: Setting
    labels: list[str]

    @classmethod
    def load(cls, model: str | Path) -> StoredModel:
        model_dir = CLASSIFIER_DIRS.resolve(model)
        spec = read_pipeline(model_dir)
        config = spec.get("postprocess", {}).get("config")
        post = Postprocessor.from_dict(spec["postprocess"]).config if config else \
            PostprocessConfig()
        return cls(ValOutputs.load(model_dir / VAL_OUTPUTS_FILE), Setting("shipped", post=post),
                   list(spec["labels"]))


def cv_splits(n: int, folds: int = 5, repeats: int = 2,
              seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit, held-out) index pairs: ``folds`` folds of ``repeats`` shuffles."""
    return [split for r in range(repeats)
            for split in KFold(folds, shuffle=True, random_state=seed + r).split(np.arange(n))]


def cv_scores(val: ValOutputs, setting: Setting, folds: int = 5, repeats: int = 2,
              seed: int = 0, labels: Sequence[str] | None = None) -> np.ndarray:
    """F2 of ``setting`` fitted on (folds-1)/folds of the stored validation outputs and
    scored on the rest, per split (``repeats`` shuffles): the same splits for every
    setting, so scores of two settings can be compared split by split."""
    y = val.targets
    p_original = val.get("original", setting.views, setting.members, setting.network)
    p_dehazed = val.get("dehazed", setting.views, setting.members, setting.network)
    scores = []
    for fit, held in cv_splits(len(y), folds, repeats, seed):
        post = fit_postprocessor(setting.post, y[fit], p_original[fit],
                                 None if p_dehazed is None else p_dehazed[fit], seed, labels)
        held_scores = post.scores(p_original[held],
                                  None if p_dehazed is None else p_dehazed[held])
        scores.append(f2_score(y[held], post.decide(held_scores)))
    return np.asarray(scores)


def paired(scores: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
    """Mean score, and its mean difference to ``baseline`` with the standard error."""
    diff = scores - baseline
    return {"f2": float(scores.mean()), "diff": float(diff.mean()),
            "diff_se": float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0}


def validation_cv(val: ValOutputs, settings: Sequence[Setting], folds: int = 5,
                  repeats: int = 2, seed: int = 0,
                  labels: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Each setting scored by ``cv_scores``: a way to choose between configurations without
    touching the test split. Differences are paired with the first setting, split by split."""
    per_setting = [cv_scores(val, setting, folds, repeats, seed, labels)
                   for setting in tqdm(settings, desc="validation CV", unit="setting")]
    return [{"setting": setting.name, **paired(scores, per_setting[0])}
            for setting, scores in zip(settings, per_setting)]
