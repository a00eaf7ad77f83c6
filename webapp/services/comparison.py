"""Comparing two models on the frozen evaluation set: is the candidate better, where, and
on which images do they disagree.

The evaluation images are the reviewed images of the ``evaluation`` split (never trained
on: ``webapp.services.trainings`` exports ``train`` images only); their current labels
are the truth. Each model's predictions of them are stored like any prediction (once per
image and model) but kept apart from the labels until the model is activated, so a
comparison is a read of stored rows, repeatable and cheap.

F2 is the Planet metric (per image, averaged); the difference comes with a paired
bootstrap 95% interval over the images both models predicted. A label one model does not
know counts as never predicted by it, and is shown as unknown in the per-label table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import QuerySet

from classifier import fbeta_per_sample, paired_bootstrap, per_label_scores
from webapp.models import Image, ImageLabel, ModelVersion, Prediction
from webapp.services import recognition

__all__ = ["compare", "evaluation_images", "predict_evaluation_images"]

CHUNK = 64
DISAGREEMENTS = 24
PR_POINTS = 40


def evaluation_images() -> QuerySet[Image]:
    """The images every comparison is on: reviewed, in the evaluation set, readable."""
    return Image.objects.filter(split=Image.Split.EVALUATION, reviewed=True,
                                status=Image.Status.READY)


def predict_evaluation_images(model: ModelVersion,
                              beat: Callable[[], None] | None = None) -> int:
    """Store ``model``'s predictions of the evaluation images it has not predicted yet
    (labels untouched); returns how many were made."""
    done = set(Prediction.objects.filter(model=model, image__in=evaluation_images())
               .values_list("image_id", flat=True))
    ids = [i for i in evaluation_images().order_by("pk").values_list("pk", flat=True)
           if i not in done]
    made = 0
    for start in range(0, len(ids), CHUNK):
        images = list(Image.objects.filter(pk__in=ids[start:start + CHUNK]).order_by("pk"))
        outputs, _errors = recognition.predict_stored(images, model)
        with transaction.atomic():
            recognition.store_prediction_rows([i for i in images if i.pk in outputs], model,
                                              outputs)
        made += len(outputs)
        if beat is not None:
            beat()
    return made


def _truth(ids: list[int]) -> dict[int, set[str]]:
    truth: dict[int, set[str]] = {i: set() for i in ids}
    for image_id, name in (ImageLabel.objects.filter(image_id__in=ids)
                           .values_list("image_id", "label__name")):
        truth[image_id].add(name)
    return truth


def _pr_curve(y: np.ndarray, scores: np.ndarray) -> list[list[float]]:
    """Micro-averaged precision-recall points (recall, precision) over every image x
    label pair, at PR_POINTS score thresholds."""
    y, scores = y.ravel(), scores.ravel()
    positives = y.sum()
    if positives == 0:
        return []
    points = []
    for threshold in np.unique(np.quantile(scores, np.linspace(0, 1, PR_POINTS))):
        picked = scores >= threshold
        tp = float((picked & y).sum())
        points.append([round(tp / positives, 4), round(tp / max(picked.sum(), 1), 4)])
    return sorted(points)


def compare(candidate: ModelVersion, against: ModelVersion) -> dict[str, Any]:
    """The comparison the API and the page show (see the module docstring)."""
    eval_ids = list(evaluation_images().order_by("pk").values_list("pk", flat=True))
    rows = (Prediction.objects.filter(model__in=[candidate, against], image_id__in=eval_ids)
            .values_list("image_id", "model_id", "tags", "probabilities"))
    predicted: dict[int, dict[int, tuple[list[str], dict[str, float]]]] = {
        candidate.pk: {}, against.pk: {}}
    for image_id, model_id, tags, probabilities in rows:
        predicted[model_id][image_id] = (tags, probabilities)
    ids = [i for i in eval_ids if i in predicted[candidate.pk] and i in predicted[against.pk]]
    truth = _truth(ids)
    vocabulary = sorted(set().union(*truth.values(), candidate.labels, against.labels)
                        if ids else set(candidate.labels) | set(against.labels))
    column = {name: j for j, name in enumerate(vocabulary)}
    y = np.zeros((len(ids), len(vocabulary)), bool)
    for row, image_id in enumerate(ids):
        y[row, [column[n] for n in truth[image_id]]] = True

    def matrices(model: ModelVersion) -> tuple[np.ndarray, np.ndarray]:
        decided = np.zeros_like(y)
        scores = np.zeros(y.shape, np.float32)
        for row, image_id in enumerate(ids):
            tags, probabilities = predicted[model.pk][image_id]
            decided[row, [column[t] for t in tags if t in column]] = True
            for name, value in probabilities.items():
                if name in column:
                    scores[row, column[name]] = value
        return decided, scores

    (cand, cand_scores), (base, base_scores) = matrices(candidate), matrices(against)
    f2_cand, f2_base = fbeta_per_sample(y, cand), fbeta_per_sample(y, base)
    low, high = paired_bootstrap(f2_cand, f2_base) if ids else (0.0, 0.0)
    per_cand = per_label_scores(y, cand, vocabulary)
    per_base = per_label_scores(y, base, vocabulary)

    def known(model: ModelVersion, name: str, field: str) -> float | None:
        scores = per_cand if model is candidate else per_base
        return round(scores[name][field], 4) if name in model.labels else None

    labels = [{"label": name, "support": per_cand[name]["support"],
               **{f"{field}_{who}": known(model, name, field)
                  for field in ("f2", "precision", "recall")
                  for who, model in (("candidate", candidate), ("active", against))}}
              for name in vocabulary]
    labels.sort(key=lambda row: (-row["support"], row["label"]))
    gap = np.abs(f2_cand - f2_base) if ids else np.zeros(0)
    order = np.argsort(-gap, kind="stable")[:DISAGREEMENTS]
    disagreements = [
        {"image": ids[i], "truth": sorted(truth[ids[i]]),
         "candidate": sorted(predicted[candidate.pk][ids[i]][0]),
         "active": sorted(predicted[against.pk][ids[i]][0]),
         "f2_candidate": round(float(f2_cand[i]), 4), "f2_active": round(float(f2_base[i]), 4)}
        for i in order if gap[i] > 0]
    return {
        "candidate": candidate.pk, "against": against.pk, "evaluation_images": len(ids),
        "missing": {"candidate": len(eval_ids) - len(predicted[candidate.pk]),
                    "active": len(eval_ids) - len(predicted[against.pk])},
        "f2": {"candidate": round(float(f2_cand.mean()), 4) if ids else None,
               "active": round(float(f2_base.mean()), 4) if ids else None,
               "difference": round(float((f2_cand - f2_base).mean()), 4) if ids else None,
               "interval": [round(low, 4), round(high, 4)]},
        "labels": labels,
        "pr_curves": {"candidate": _pr_curve(y, cand_scores),
                      "active": _pr_curve(y, base_scores)},
        "disagreements": disagreements,
    }
