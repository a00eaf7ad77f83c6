"""Where retrieval models live, without loading one (no torch): the web app finds and
versions its search model at start-up and loads the networks on the first search."""

from __future__ import annotations

from pathlib import Path

from imagery.model_dirs import ModelDirs

SPEC_FILE = "retrieval.json"
RETRIEVAL_DIRS = ModelDirs("retrieval", SPEC_FILE,
                           Path(__file__).resolve().parent / "default_model", named_by="folder")
