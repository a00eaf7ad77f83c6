"""Cross-modal hashing retrieval (METHOD.md section 3): LabNet / ImgNet / TxtNet with
discriminators (SSAH) and the DCMH baseline, Hamming search, MAP evaluation.

Plain Python/PyTorch; no Django imports. What the web app uses is exported here, and
only this (tests/webapp/test_layers.py): find and load a model (``Retriever``: encode
texts and images, describe), a live Hamming index, and codes stored as integers.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from retrieval.codes import from_int, packed_from_int, to_int
from retrieval.cutoffs import Cutoffs, read_cutoffs
from retrieval.model_dirs import RETRIEVAL_DIRS
from retrieval.text import UnknownQuery

if TYPE_CHECKING:
    from retrieval.index import LiveHammingIndex, set_search_threads
    from retrieval.retriever import Retriever, loading_before_fork

#: names whose modules load torch or faiss, imported on first use (the first search)
_LAZY = {"Retriever": "retrieval.retriever", "loading_before_fork": "retrieval.retriever",
         "LiveHammingIndex": "retrieval.index",
         "set_search_threads": "retrieval.index"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'retrieval' has no attribute {name!r}")


__all__ = ["Cutoffs", "LiveHammingIndex", "Retriever", "UnknownQuery", "find_model",
           "from_int", "loading_before_fork", "packed_from_int", "read_cutoffs",
           "set_search_threads", "to_int"]


def find_model(name_or_path: str | Path) -> Path:
    """The retrieval model directory ('default' = the shipped one); FileNotFoundError
    when there is none."""
    return RETRIEVAL_DIRS.resolve(name_or_path)
