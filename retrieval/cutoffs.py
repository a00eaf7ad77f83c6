"""How far a text search result may lie and still be relevant: cut-offs chosen on the
model's validation split.

A Hamming ranking always has a next result; without a cut-off every query answers with
as many images as were asked for, the 240th as confidently as the first. For every label
of the model, its own words (the model's wording) are the query and the validation
images carrying the label are the relevant ones; pooled over the labels, precision among
the images within distance d is measured for every d (it falls as d grows, towards the
labels' mean frequency, 0.17 on Planet). The **strong** cut-off is the last distance up to
which that precision stays at least STRONG (0.6), the **weaker** one the last up to which
it stays at least WEAKER (1/3: one result in three is right, twice the chance of a random
image); results beyond it are not shown. (Targets of 0.8 and 0.5 left the shipped model
no strong result at all: its precision at distance 0 is 0.67.)

``python -m retrieval cutoffs --model DIR --labels CSV --images IMAGES`` writes
``cutoffs.json`` beside the model (a sidecar: the codes do not change, so neither does
the model's version).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.metrics import hamming

__all__ = ["CUTOFF_FILE", "STRONG", "WEAKER", "Cutoffs", "fit_cutoffs", "read_cutoffs"]

CUTOFF_FILE = "cutoffs.json"
STRONG, WEAKER = 0.6, 1 / 3


class Cutoffs(dict):
    """bits -> {"strong": d, "weaker": d, ...}; ``strength(bits, d)`` names a result."""

    def strength(self, bits: int, distance: int) -> str | None:
        """"strong", "weaker", or None (beyond the cut-off: not shown)."""
        entry = self.get(str(bits))
        if entry is None:
            return "strong"  # a model without cut-offs: every result, as before
        if distance <= entry["strong"]:
            return "strong"
        return "weaker" if distance <= entry["weaker"] else None


def cutoff_for(precision: np.ndarray, target: float) -> int:
    """The last distance up to which the cumulative precision stays at least ``target``
    (-1: not even at distance 0)."""
    below = np.flatnonzero(precision < target)
    return int(below[0]) - 1 if len(below) else len(precision) - 1


def fit_cutoffs(retriever, images: np.ndarray, tags: Sequence[Sequence[str]]) -> Cutoffs:
    """Cut-offs for every code length of ``retriever`` from validation ``images`` and
    their ``tags`` (see the module docstring)."""
    labels = [name for name in retriever.label_names if any(name in t for t in tags)]
    truth = np.array([[name in t for name in labels] for t in tags], bool)
    queries = [retriever.tags_text([name]) for name in labels]
    descriptors = retriever.image_descriptors(list(images))
    found = Cutoffs()
    for bits in retriever.bits:
        image_codes = retriever.codes_from_descriptors(descriptors, bits)
        text_codes = retriever.text_codes(queries, bits, check=False)
        distances = hamming(text_codes, image_codes)  # labels x images
        relevant = np.bincount(distances[truth.T], minlength=bits + 1)
        every = np.bincount(distances.ravel(), minlength=bits + 1)
        precision = np.cumsum(relevant) / np.maximum(np.cumsum(every), 1)
        found[str(bits)] = {
            "strong": cutoff_for(precision, STRONG), "weaker": cutoff_for(precision, WEAKER),
            "precision_within": [round(float(p), 4) for p in precision],
            "share_within": [round(float(s), 4) for s in np.cumsum(every) / every.sum()],
            "queries": len(labels), "images": int(len(images)),
            "targets": {"strong": STRONG, "weaker": WEAKER}}
    return found


def write_cutoffs(model_dir: Path, cutoffs: Cutoffs, provenance: dict[str, Any]) -> None:
    (model_dir / CUTOFF_FILE).write_text(json.dumps({"cutoffs": cutoffs, **provenance},
                                                    indent=1))


def read_cutoffs(model_dir: Path) -> Cutoffs:
    """The model's cut-offs (empty: none fitted, every result counts as strong)."""
    path = Path(model_dir) / CUTOFF_FILE
    if not path.exists():
        return Cutoffs()
    return Cutoffs(json.loads(path.read_text())["cutoffs"])
