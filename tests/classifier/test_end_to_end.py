"""Whole runs on tiny generated data through the command line exactly as users call it:
train networks -> assemble a model -> evaluate / report / predict. Labels are made up, so
nothing can depend on Planet's label set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classifier.cli import main
from classifier.metrics import f2_score
from imagery.datasets import load_images, read_labels
from tests.synthetic import LABELS, chip, train_args, write_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def run_dir(dataset: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both networks of the method, trained in two runs into one folder."""
    out = tmp_path_factory.mktemp("run")
    for network in ("original", "dehazed"):
        assert main(train_args(dataset, out, "--network", network, "--epochs", "3",
                               "--lr", "3e-3")) == 0
    return out


@pytest.fixture(scope="module")
def model_dir(run_dir: Path, dataset: tuple[Path, Path],
              tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model")
    assert main(["assemble", str(run_dir / "original.pt"), str(run_dir / "dehazed.pt"),
                 "--images", str(dataset[1]), "--out", str(out)]) == 0
    return out


def every_label_f2(split_csv: Path) -> float:
    """F2 of the trivial answer "every label" on a split: what a model must clearly beat
    (F2 rewards recall, so this blind guess scores high)."""
    table = read_labels(split_csv)
    y = np.array([[label in tags for label in LABELS] for tags in table.tags])
    return f2_score(y, np.ones_like(y))


def test_train_writes_one_network_with_its_record(run_dir: Path) -> None:
    for name in ("original.pt", "original.json", "train_log_original.csv",
                 "learning_curves_original.png", "dehazed.pt", "train.csv", "val.csv",
                 "test.csv"):
        assert (run_dir / name).exists(), name
    info = json.loads((run_dir / "original.json").read_text())
    assert info["kind"] == "original" and info["labels"] == sorted(LABELS)
    assert info["epochs"] == 3 and info["split"]["n_images"] == {"train": 60, "val": 30,
                                                                  "test": 30}
    assert info["provenance"]["command"].startswith("python -m classifier train --labels")
    assert "--network original" in info["provenance"]["command"]
    assert json.loads((run_dir / "dehazed.json").read_text())["kind"] == "dehazed"
    assert len(read_labels(run_dir / "val.csv").names) == 30


def test_assemble_writes_a_complete_model_directory(model_dir: Path) -> None:
    for name in ("pipeline.json", "original.pt", "dehazed.pt", "val_outputs.npz", "val.csv",
                 "test.csv", "train_log.csv", "learning_curves.png"):
        assert (model_dir / name).exists(), name
    spec = json.loads((model_dir / "pipeline.json").read_text())
    assert spec["labels"] == sorted(LABELS)
    assert len(spec["postprocess"]["thresholds"]) == len(LABELS)
    assert spec["members"] == {"original": ["original"], "dehazed": ["dehazed"]}
    # each network's own command and config travel with the model
    for name, network in spec["networks"].items():
        assert network["provenance"]["command"].startswith("python -m classifier train")
        assert network["train_config"]["epochs"] == 3 and network["precision"] == "fp16", name
    assert spec["assembly"]["command"].startswith("python -m classifier assemble")
    log = (model_dir / "train_log.csv").read_text().splitlines()
    assert sorted({row.split(",")[0] for row in log[1:]}) == ["dehazed", "original"]
    # the "unlike the training imagery" detector, fitted on the validation descriptors
    novelty = json.loads((model_dir / "novelty.json").read_text())
    assert novelty["n_fit"] + novelty["n_calibration"] == 30
    assert novelty["network"] == "original"


def test_predictions_carry_a_novelty_score(model_dir: Path, dataset: tuple[Path, Path]) -> None:
    from classifier.predictor import Predictor

    predictor = Predictor(model_dir, batch_size=8)
    chips = load_images(read_labels(model_dir / "test.csv"), dataset[1], 32, LABELS).images
    alike = predictor.predict(list(chips[:16]))
    stripes = np.zeros((32, 32, 3), np.uint8)
    stripes[:, ::2] = (255, 0, 255)  # nothing like the chips the model saw
    odd = predictor.predict([stripes])[0]
    assert all(p.novelty is not None and isinstance(p.unusual, bool) for p in alike)
    assert odd.unusual and odd.novelty > max(p.novelty for p in alike)


def test_evaluate_beats_predicting_every_label(model_dir: Path, dataset: tuple[Path, Path],
                                              capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    _, images = dataset
    json_file = tmp_path / "result.json"
    assert main(["evaluate", "--model", str(model_dir), "--labels", str(model_dir / "test.csv"),
                 "--images", str(images), "--json", str(json_file)]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["n_images"] == 30
    assert set(last["per_label"]) == set(LABELS)
    assert set(last["per_label"]["bright"]) >= {"f2", "precision", "recall", "support"}
    # these labels are easy: a 3-epoch tiny network must clearly beat the blind guess
    baseline = every_label_f2(model_dir / "test.csv")
    assert last["f2"] > baseline + 0.05, (last["f2"], baseline)
    assert json.loads(json_file.read_text())["f2"] == last["f2"]


def test_evaluate_stage_switches_change_the_setting(model_dir: Path, dataset: tuple[Path, Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _, images = dataset
    main(["evaluate", "--model", str(model_dir), "--labels", str(model_dir / "test.csv"),
          "--images", str(images), "--tta", "1", "--calibration", "none", "--thresholds", "0.2",
          "--no-dehaze-choice"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["settings"] == {"tta": 1, "dehaze": "original", "calibration": "none",
                                "thresholds": 0.2, "decision": "threshold"}
    main(["evaluate", "--model", str(model_dir), "--labels", str(model_dir / "test.csv"),
          "--images", str(images), "--combine", "stack"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["settings"]["dehaze"] == "stack"
    assert last["f2"] > every_label_f2(model_dir / "test.csv") + 0.05


def test_stacking_needs_the_dehazed_network(run_dir: Path, dataset: tuple[Path, Path],
                                            tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="needs a network on dehazed images"):
        main(["assemble", str(run_dir / "original.pt"), "--images", str(dataset[1]),
              "--out", str(tmp_path), "--combine", "stack"])


def test_report_writes_ablation_table_and_charts(model_dir: Path, dataset: tuple[Path, Path],
                                                tmp_path: Path) -> None:
    _, images = dataset
    assert main(["report", "--model", str(model_dir), "--labels", str(model_dir / "test.csv"),
                 "--images", str(images), "--out", str(tmp_path), "--validation-cv"]) == 0
    table = (tmp_path / "report.md").read_text()
    ablation = [line for line in table[:table.index("## ")].splitlines()
                if line.startswith("| ") and "95% interval" not in line]
    assert ablation[0].endswith("| +0.0000 | [+0.0000, +0.0000] |")  # the full pipeline
    for row in ablation[1:]:  # each difference with its paired bootstrap interval
        diff, interval = row.split(" | ")[-2:]
        low, high = (float(v) for v in interval.strip(" |[]").split(", "))
        assert low <= float(diff) <= high, row
    cv = table[table.index("## Cross-validation on the validation outputs"):]
    cv_rows = [line for line in cv.splitlines() if line.startswith("| ") and "CV F2" not in line]
    assert len(cv_rows) == 10 and cv_rows[0].endswith("| +0.0000 ± 0.0000 |")
    assert any(not row.endswith("| +0.0000 ± 0.0000 |") for row in cv_rows[1:])
    assert "lasso instead of ridge" in table and "no TTA" in table
    assert "stacking both networks instead of the per-label choice" in table
    assert (tmp_path / "ablation.png").stat().st_size > 1000
    assert (tmp_path / "per_label_f2.png").stat().st_size > 1000


def test_report_of_a_model_without_a_dehazed_network(run_dir: Path, dataset: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    """The shipped default has no dehazed network: its report leaves out the rows that
    drop, keep or stack one (they failed: "this model has no dehazed network"). Nor has
    it a recalibration layer: the rows switch each layer on."""
    _, images = dataset
    model = tmp_path / "model"
    assert main(["assemble", str(run_dir / "original.pt"), "--images", str(images),
                 "--out", str(model), "--calibration", "none"]) == 0
    assert main(["report", "--model", str(model), "--labels", str(model / "test.csv"),
                 "--images", str(images), "--out", str(tmp_path / "report"),
                 "--validation-cv"]) == 0
    table = (tmp_path / "report" / "report.md").read_text()
    assert "no dehazed network" in table and "no TTA" in table
    assert "dehazed model only" not in table and "stacking" not in table
    assert "with the ridge layer (the paper's)" in table and "with a lasso layer" in table
    assert "no recalibration layer" not in table
    cv = table[table.index("## Cross-validation on the validation outputs"):]
    assert len([line for line in cv.splitlines()
                if line.startswith("| ") and "CV F2" not in line]) == 7


def test_predict_reports_a_broken_file_and_tags_the_others(
        model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.png"
    chip(np.random.default_rng(1), {"bright"}).resize((256, 256)).save(good)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    code = main(["predict", "--model", str(model_dir), str(broken), str(good)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"{broken}: ERROR:" in out
    good_line = next(line for line in out.splitlines() if line.startswith(str(good)))
    assert "bright=" in good_line


def test_dehaze_command_writes_an_image(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    chip(np.random.default_rng(2), {"striped"}).save(src)
    assert main(["dehaze", str(src), str(tmp_path / "out.png")]) == 0
    assert Image.open(tmp_path / "out.png").size == (32, 32)


def test_interrupted_training_resumes(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    args = train_args(dataset, tmp_path, "--epochs", "2", "--max-epochs-this-run", "1")
    assert main(args) == 1  # paused after one epoch
    assert not (tmp_path / "original.pt").exists()
    assert main(args) == 0  # resumed, finished
    log = (tmp_path / "train_log_original.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2"]
    assert json.loads((tmp_path / "original.json").read_text())["epochs"] == 2
    with pytest.raises(SystemExit, match="holds another split"):
        main(train_args(dataset, tmp_path, "--epochs", "1", "--seed", "3"))


def test_continued_training_starts_from_the_given_network(run_dir: Path,
                                                          dataset: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    import torch

    from classifier.model import ModelConfig, create_model
    from classifier.train import _load_initial_weights

    start_file = run_dir / "original.pt"
    config = json.loads((run_dir / "original.json").read_text())["model"]
    net = create_model(ModelConfig(**config))
    _load_initial_weights(net, start_file)
    stored = torch.load(start_file, weights_only=True)["state_dict"]
    for key, value in net.state_dict().items():
        assert torch.equal(value, stored[key].to(value.dtype)), key
    other = create_model(ModelConfig(**{**config, "hidden": 8}))
    with pytest.raises(ValueError, match="--init-from"):
        _load_initial_weights(other, start_file)
    with pytest.raises(FileNotFoundError):
        _load_initial_weights(net, tmp_path / "missing.pt")

    args = train_args(dataset, tmp_path, "--epochs", "1", "--lr", "1e-7",
                      "--init-from", str(start_file))
    assert main(args) == 0
    # at a negligible learning rate the continued network keeps the weights it started from
    end = torch.load(tmp_path / "original.pt", weights_only=True)["state_dict"]
    conv = next(key for key in stored if key.endswith("weight") and stored[key].ndim == 4)
    assert torch.allclose(stored[conv].float(), end[conv].float(), atol=1e-3)
    # another split would validate on images the starting network trained on
    with pytest.raises(SystemExit, match="were training images of that network"):
        main(train_args(dataset, tmp_path / "other", "--epochs", "1", "--seed", "1",
                        "--init-from", str(start_file)))


def test_ensemble_members_are_trained_apart_and_averaged(
        run_dir: Path, dataset: tuple[Path, Path], tmp_path: Path) -> None:
    import torch

    from classifier.inference import predict_batches
    from classifier.predictor import Predictor
    from classifier.store import ValOutputs, load_network, read_network_file

    members = tmp_path / "members"
    start = str(run_dir / "original.pt")
    # two restarts of the original network with their own seeds and a cosine schedule
    # (member 2 with its own architecture: the last VGG stage at twice the resolution)
    for member, extra in (("1", []), ("2", ["--keep-resolution-after", "4"])):
        assert main(train_args(dataset, members, "--epochs", "2", "--schedule", "cosine",
                               "--lr", "3e-3", "--member", member, "--init-from", start,
                               *extra)) == 0
    lrs = [float(row.split(",")[-2]) for row in
           (members / "train_log_original-1.csv").read_text().splitlines()[1:]]
    assert lrs[0] == pytest.approx(3e-3) and lrs[1] < lrs[0]  # cosine decays within a run

    model = tmp_path / "model"
    networks = [start, str(members / "original-1.pt"), str(members / "original-2.pt"),
                str(run_dir / "dehazed.pt")]
    assert main(["assemble", *networks, "--images", str(dataset[1]), "--out", str(model),
                 "--weights", "int8", "--fp16-networks", "original"]) == 0
    dtypes = {name: {v.dtype for v in torch.load(model / f"{name}.pt",
                                                   weights_only=True)["state_dict"].values()}
              for name in ("original", "original-1")}
    assert torch.int8 not in dtypes["original"] and torch.int8 in dtypes["original-1"]
    spec = json.loads((model / "pipeline.json").read_text())
    assert spec["members"] == {"original": ["original", "original-1", "original-2"],
                               "dehazed": ["dehazed"]}
    assert {n: e["epochs"] for n, e in spec["networks"].items()} == {
        "original": 3, "original-1": 2, "original-2": 2, "dehazed": 3}
    assert "--member 2" in spec["networks"]["original-2"]["provenance"]["command"]
    nets = [load_network(model / f"{n}.pt", torch.device("cpu"))
            for n in spec["members"]["original"]]
    assert [n.config.keep_resolution_after for n in nets] == [0, 0, 4]
    first_conv = next(k for k, v in nets[1].state_dict().items() if v.ndim == 4)
    assert not torch.allclose(nets[1].state_dict()[first_conv], nets[2].state_dict()[first_conv])

    # stored validation outputs: a kind's output is its members' mean, members kept apart
    val = ValOutputs.load(model / "val_outputs.npz")
    outputs = val.member_outputs("original", 8)
    # ... computed from the weights as they ship (int8 here), not from the trained fp32 ones
    val_images = load_images(read_labels(model / "val.csv"), dataset[1], 32, list(LABELS)).images
    cpu = torch.device("cpu")
    shipped = predict_batches(load_network(model / "original-1.pt", cpu), val_images, cpu, 8)
    trained = predict_batches(load_network(members / "original-1.pt", cpu), val_images, cpu, 8)
    np.testing.assert_allclose(outputs[1], shipped, atol=1e-6)
    assert np.abs(outputs[1] - trained).max() > 1e-4
    assert len(outputs) == 3
    np.testing.assert_allclose(val.get("original", 8), np.mean(outputs, axis=0), atol=1e-6)
    np.testing.assert_allclose(val.get("original", 8, members=1), outputs[0])
    assert val.member_outputs("dehazed", 8) == []
    assert val.member_names("original") == ["original", "original-1", "original-2"]

    # the predictor averages the members' TTA outputs
    predictor = Predictor(model, device="cpu")
    assert predictor.is_ensemble and len(predictor.networks["original"]) == 3
    prepared = np.stack([np.asarray(Image.new("RGB", (32, 32), (40 * i, 90, 30)))
                         for i in range(4)])
    out = predictor.network_outputs(prepared, needed=["original"])["original"]
    expected = np.mean([predict_batches(n, prepared, torch.device("cpu"), 8) for n in nets],
                       axis=0)
    np.testing.assert_allclose(out, expected, atol=1e-5)

    # a model's networks assemble again: here without member 0, stored weights unchanged
    refit = tmp_path / "refit"
    assert main(["assemble", str(model / "original-1.pt"), str(model / "original-2.pt"),
                 str(model / "dehazed.pt"), "--images", str(dataset[1]), "--out", str(refit),
                 "--weights", "int8"]) == 0
    again = json.loads((refit / "pipeline.json").read_text())
    assert again["members"] == {"original": ["original-1", "original-2"], "dehazed": ["dehazed"]}
    for name in ("original-1", "original-2"):
        before = torch.load(model / f"{name}.pt", weights_only=True)["state_dict"]
        after = torch.load(refit / f"{name}.pt", weights_only=True)["state_dict"]
        for key, value in before.items():
            assert torch.equal(value, after[key]), (name, key)
    np.testing.assert_allclose(ValOutputs.load(refit / "val_outputs.npz").get("original", 8),
                               np.mean(outputs[1:], axis=0), atol=1e-6)
    assert again["networks"]["original-1"]["provenance"] == \
        spec["networks"]["original-1"]["provenance"]
    _, kept = read_network_file(refit / "original-1.pt")
    assert kept  # loads

    # networks that do not fit together are refused
    with pytest.raises(SystemExit, match="named alike"):
        main(["assemble", start, start, "--images", str(dataset[1]), "--out", str(tmp_path / "x")])
    assert main(train_args(dataset, tmp_path / "seed1", "--epochs", "1", "--seed", "1")) == 0
    with pytest.raises(SystemExit, match="another val split"):
        main(["assemble", str(tmp_path / "seed1" / "original.pt"), str(run_dir / "dehazed.pt"),
              "--images", str(dataset[1]), "--out", str(tmp_path / "y")])
    shutil.copyfile(start, tmp_path / "lonely.pt")
    with pytest.raises(SystemExit, match="no lonely.json beside it"):
        main(["assemble", str(tmp_path / "lonely.pt"), "--images", str(dataset[1]),
              "--out", str(tmp_path / "z")])

    # the report measures the ensemble against its first members alone
    assert main(["report", "--model", str(model), "--labels", str(model / "test.csv"),
                 "--images", str(dataset[1]), "--out", str(tmp_path / "report")]) == 0
    assert "no ensemble (one network of each kind)" in (tmp_path / "report/report.md").read_text()


def test_models_without_ensembles_have_no_ensemble_ablation(model_dir: Path) -> None:
    from classifier.predictor import Predictor

    predictor = Predictor(model_dir, device="cpu")
    assert not predictor.is_ensemble
    assert set(predictor.networks) == {"original", "dehazed"}
