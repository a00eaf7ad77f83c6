"""Model directories of both libraries: where one is, which version it is, how it was made.

The classifier (``pipeline.json``) and the retrieval model (``retrieval.json``) are each a
directory marked by one JSON spec file, with a copy shipped in the package under the name
``default``. Their version strings are stored in the web app's database (the classifier's
model versions, the search codes of the retrieval model), so a version must change when the
spec changes and never otherwise: it is the spec file's sha256, prefixed with the spec's
``name`` (classifier) or the folder's name (retrieval, as it always was).
"""

from __future__ import annotations

import hashlib
import json
import platform
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class ModelDirs:
    """One library's model directories: ``spec_file`` marks one, ``default`` is shipped."""

    kind: str
    spec_file: str
    default: Path
    named_by: Literal["spec", "folder"]

    def resolve(self, name: str | Path) -> Path:
        """``default`` means the model shipped in the package; anything else is a path."""
        path = self.default if str(name) == "default" else Path(name)
        if not (path / self.spec_file).exists():
            raise FileNotFoundError(
                f"{path} is not a {self.kind} model directory (no {self.spec_file})")
        return path

    def version(self, name: str | Path) -> str:
        """``<name>-<12 hex digits of the spec's sha256>``: read from the spec alone (no
        weights loaded), so the web app can register a model cheaply."""
        path = self.resolve(name)
        raw = (path / self.spec_file).read_bytes()
        prefix = json.loads(raw).get("name", path.name) if self.named_by == "spec" else path.name
        return f"{prefix}-{hashlib.sha256(raw).hexdigest()[:12]}"


def provenance(program: str, argv: Sequence[str]) -> dict[str, str]:
    """How a model was made: the exact command line and the torch / Python versions."""
    return {"command": f"python -m {program} {shlex.join(argv)}",
            "torch": _torch_version(), "python": platform.python_version()}


def _torch_version() -> str:
    """The installed torch, as ``torch.__version__`` says it (read from the package's
    metadata: this foundation never imports torch)."""
    try:
        return version("torch")
    except PackageNotFoundError:
        return "not installed"
