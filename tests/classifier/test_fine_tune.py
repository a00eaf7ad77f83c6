"""Fine-tuning an assembled model on new labels (the web app's training step) runs the
CLI's own train and assemble, grows the head by label name and resumes when stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from classifier import FineTuneSettings, TrainingHooks, fine_tune
from classifier.cli import main
from classifier.model import ModelConfig, create_model
from classifier.store import read_network_file
from classifier.train import map_label_rows
from tests.synthetic import train_args, write_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_dataset(tmp_path_factory.mktemp("data"), count=60)


@pytest.fixture(scope="module")
def base_model(dataset: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model that knows two of the three labels (bright, reddish)."""
    run, out = tmp_path_factory.mktemp("run"), tmp_path_factory.mktemp("base")
    assert main(train_args(dataset, run, "--epochs", "1", "--vocabulary", "bright,reddish",
                           "--member", "1")) == 0
    assert main(["assemble", str(run / "original-1.pt"), "--images", str(dataset[1]),
                 "--out", str(out), "--no-test"]) == 0
    return out


def test_label_rows_follow_names_and_new_labels_start_fresh(tiny_model) -> None:
    trained = tiny_model(num_labels=3, seed=1)
    ours = create_model(ModelConfig(num_labels=3, width=0.125, hidden=16))
    mapped = map_label_rows(trained.state_dict(), ours, ["a", "b", "c"], ["c", "new", "a"])
    weight, fresh = mapped["head.5.weight"], ours.state_dict()["head.5.weight"]
    assert torch.equal(weight[0], trained.state_dict()["head.5.weight"][2])  # c
    assert torch.equal(weight[2], trained.state_dict()["head.5.weight"][0])  # a
    assert torch.equal(weight[1], fresh[1])  # new: as the fresh network starts it
    assert torch.equal(mapped["head.1.weight"], trained.state_dict()["head.1.weight"])


def test_fine_tune_grows_the_head_and_assembles_without_a_test_split(
        base_model: Path, dataset: tuple[Path, Path], tmp_path: Path) -> None:
    epochs: list[tuple[str, int]] = []
    hooks = TrainingHooks(on_epoch=lambda name, history: epochs.append((name, len(history))))
    model_dir, commands = fine_tune(
        base_model, dataset[0], dataset[1], tmp_path, "cand", ["bright", "reddish", "striped"],
        FineTuneSettings(epochs=2, patience=5, threads=1, lr=3e-3, val_fraction=0.3),
        hooks_for=lambda name: hooks)
    spec = json.loads((model_dir / "pipeline.json").read_text())
    assert spec["labels"] == ["bright", "reddish", "striped"]
    assert spec["members"] == {"original": ["original-1"]}
    assert "test" not in spec["metrics"] and spec["metrics"]["val"]["n_images"] == 18
    assert epochs == [("original-1", 1), ("original-1", 2)]
    assert commands[0].startswith("python -m classifier train") and "--fine-tune" in commands[0]
    assert commands[-1].startswith("python -m classifier assemble")
    # the known labels started from the base network's rows (a fresh head would not)
    info = json.loads((tmp_path / "networks" / "original-1.json").read_text())
    assert info["train_config"]["init_from"].endswith("original-1.pt")


class Stop(Exception):
    pass


def test_a_stopped_fine_tune_resumes_from_its_last_epoch(
        base_model: Path, dataset: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    settings = FineTuneSettings(epochs=3, patience=5, threads=1)

    def stop_after_first(name: str, history: list) -> None:
        raise Stop

    with pytest.raises(Stop):
        fine_tune(base_model, dataset[0], dataset[1], tmp_path, "cand", ["bright", "striped"],
                  settings, hooks_for=lambda name: TrainingHooks(on_epoch=stop_after_first))
    assert not (tmp_path / "model").exists()
    seen: list[int] = []
    fine_tune(base_model, dataset[0], dataset[1], tmp_path, "cand", ["bright", "striped"],
              settings, hooks_for=lambda name: TrainingHooks(
                  on_epoch=lambda n, history: seen.append(len(history))))
    assert "resumed after epoch 1" in capsys.readouterr().out
    assert seen == [2, 3]  # epochs 2 and 3 only: the first was not trained again
    config, state = read_network_file(tmp_path / "networks" / "original-1.pt")
    assert config["num_labels"] == 2 and state["head.5.weight"].shape[0] == 2


def test_fine_tune_refuses_without_a_starting_network(dataset: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--fine-tune needs --init-from"):
        main(train_args(dataset, tmp_path, "--fine-tune"))
