"""``python -m retrieval train`` is resumable like the classifier's: paused by
``--max-epochs-this-run`` anywhere (backbone, any code length) and run again with the
same command, it writes the model the uninterrupted run writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval.cli import main
from retrieval.store import Database
from tests.retrieval.items import TINY_MODEL, write_items

LONGER = ["--bits", "16,32", "--backbone-epochs", "2", "--epochs", "3"]


def test_a_paused_training_resumes_to_the_uninterrupted_model(tmp_path: Path) -> None:
    data = write_items(tmp_path)
    common = ["train", "--labels", str(data["labels"]), "--captions", str(data["captions"]),
              "--images", str(data["images"]), *TINY_MODEL, *LONGER]
    whole, paused = tmp_path / "whole", tmp_path / "paused"
    assert main([*common, "--out", str(whole)]) == 0
    codes = []
    for _ in range(10):
        codes.append(main([*common, "--out", str(paused), "--max-epochs-this-run", "1"]))
        if codes[-1] == 0:
            break
    # one epoch per run: backbone 2, then 3 per code length (the run that ends the
    # backbone's epochs also finds no epoch left for hashing)
    assert codes == [1] * 7 + [0]
    assert (paused / "backbone.pt").read_bytes() == (whole / "backbone.pt").read_bytes()
    for bits in (16, 32):
        ours = torch.load(paused / f"hash_{bits}.pt", weights_only=True)
        theirs = torch.load(whole / f"hash_{bits}.pt", weights_only=True)
        for net in ("imgnet", "txtnet", "labnet"):
            for key, value in theirs[net].items():
                assert torch.equal(ours[net][key], value), (bits, net, key)
        assert (paused / "checkpoints" / f"hash_{bits}_last.pt").exists()
    ours, theirs = Database.load(paused / "database.npz"), Database.load(whole / "database.npz")
    for bits in (16, 32):
        assert np.array_equal(ours.image_codes[bits], theirs.image_codes[bits])
        assert np.array_equal(ours.text_codes[bits], theirs.text_codes[bits])


def test_checkpoints_continue_only_the_run_that_made_them(tmp_path: Path) -> None:
    data = write_items(tmp_path)
    common = ["train", "--labels", str(data["labels"]), "--captions", str(data["captions"]),
              "--images", str(data["images"]), "--out", str(tmp_path / "model"), *TINY_MODEL]
    assert main([*common, "--max-epochs-this-run", "1"]) == 1
    with pytest.raises(SystemExit, match="other settings .*seed"):
        main([*common, "--seed", "1"])
    assert main([*common, "--threads", "2"]) == 0  # threads may change
