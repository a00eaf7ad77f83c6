"""Which classifier network a retrieval model builds on."""

from __future__ import annotations

import json
from pathlib import Path

from retrieval.features import backbone_file


def test_backbone_is_the_first_original_member_of_a_classifier_model(tmp_path: Path) -> None:
    (tmp_path / "pipeline.json").write_text(json.dumps(
        {"members": {"original": ["original-8", "original-10"], "dehazed": ["dehazed"]}}))
    assert backbone_file(tmp_path) == tmp_path / "original-8.pt"
    # models from before ensembles: one network per kind, named after the kind
    (tmp_path / "pipeline.json").write_text(json.dumps({"labels": ["a"]}))
    (tmp_path / "original.pt").write_bytes(b"")
    assert backbone_file(tmp_path) == tmp_path / "original.pt"
    assert backbone_file("some/backbone.pt") == Path("some/backbone.pt")
