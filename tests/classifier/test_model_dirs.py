"""Model directories: resolution, version strings (stored in the web app's database), and
the provenance a trained model records."""

from __future__ import annotations

import hashlib
import json

import pytest

from imagery.model_dirs import ModelDirs, provenance


def _model(tmp_path, folder: str, spec: dict) -> tuple:
    path = tmp_path / folder
    path.mkdir()
    raw = json.dumps(spec).encode()
    (path / "spec.json").write_bytes(raw)
    return path, hashlib.sha256(raw).hexdigest()[:12]


def test_version_is_the_spec_name_or_the_folder_name_and_the_spec_digest(tmp_path):
    path, digest = _model(tmp_path, "run-7", {"name": "planet"})
    by_spec = ModelDirs("test", "spec.json", tmp_path / "none", named_by="spec")
    by_folder = ModelDirs("test", "spec.json", tmp_path / "none", named_by="folder")
    assert by_spec.version(path) == f"planet-{digest}"
    assert by_folder.version(path) == f"run-7-{digest}"
    unnamed, digest = _model(tmp_path, "unnamed", {"labels": []})
    assert by_spec.version(unnamed) == f"unnamed-{digest}"


def test_default_names_the_shipped_directory_and_others_need_the_spec_file(tmp_path):
    shipped, _ = _model(tmp_path, "shipped", {})
    dirs = ModelDirs("test", "spec.json", shipped, named_by="spec")
    assert dirs.resolve("default") == shipped
    with pytest.raises(FileNotFoundError, match="not a test model directory"):
        dirs.resolve(tmp_path)


def test_provenance_records_the_exact_command_line():
    record = provenance("retrieval", ["train", "--name", "two words"])
    assert record["command"] == "python -m retrieval train --name 'two words'"
    assert record["torch"] and record["python"]
