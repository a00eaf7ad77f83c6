"""A classifier model directory's files, read without loading a network (no torch):
where models live (``CLASSIFIER_DIRS``), the pipeline spec, the member networks, and
their sha256 check. The web app's start-up and its management commands need only this,
so they stay light (torch is loaded by the first prediction)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imagery.digests import file_sha256
from imagery.model_dirs import ModelDirs

PIPELINE_FILE = "pipeline.json"
NETWORKS = ("original", "dehazed")
CLASSIFIER_DIRS = ModelDirs("classifier", PIPELINE_FILE,
                            Path(__file__).resolve().parent / "default_model", named_by="spec")


def network_members(model_dir: Path, spec: dict[str, Any]) -> dict[str, list[str]]:
    """Network kind -> file stems of its ensemble members, member 0 first. Models written
    before ensembles have one member per kind, named after the kind."""
    if "members" in spec:
        return {kind: list(names) for kind, names in spec["members"].items() if names}
    return {kind: [kind] for kind in NETWORKS if (model_dir / f"{kind}.pt").exists()}


class ModelFilesError(RuntimeError):
    """A model directory's network files are missing or are not the ones it was
    assembled with."""


def verify_model_files(model_dir: Path, spec: dict[str, Any]) -> None:
    """Every member network is there and, when the spec records its sha256 (models
    assembled since the digests were added), has exactly those bytes."""
    for names in network_members(model_dir, spec).values():
        for name in names:
            path = model_dir / f"{name}.pt"
            if not path.is_file():
                raise ModelFilesError(f"{path.name} is missing from {model_dir}")
            expected = spec.get("networks", {}).get(name, {}).get("sha256")
            if expected and file_sha256(path) != expected:
                raise ModelFilesError(f"{path.name} in {model_dir} is damaged or was "
                                      "replaced: its sha256 is not the one assembled")


def write_pipeline(model_dir: Path, spec: dict[str, Any]) -> None:
    (model_dir / PIPELINE_FILE).write_text(json.dumps(spec, indent=1))


def read_pipeline(model_dir: Path) -> dict[str, Any]:
    return json.loads((model_dir / PIPELINE_FILE).read_text())
