"""A whole train -> evaluate -> report -> predict run on tiny generated data, through the
command line exactly as users and reviewers call it. Labels are made up, so nothing can
depend on Planet's label set."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classifier.cli import main
from tests.synthetic import chip

LABELS = ("bright", "reddish", "striped")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    rows = []
    with tarfile.open(root / "images.tar", "w") as archive:
        for i in range(120):
            tags = {label for label in LABELS if rng.random() < 0.5} or {"bright"}
            buf = io.BytesIO()
            chip(rng, tags).save(buf, "JPEG", quality=95)
            info = tarfile.TarInfo(f"imgs/chip_{i}.jpg")
            info.size = buf.tell()
            buf.seek(0)
            archive.addfile(info, buf)
            # a repeated tag must count once
            rows.append(f"chip_{i}," + " ".join(sorted(tags) + sorted(tags)[:1]))
    (root / "labels.csv").write_text("image_name,tags\n" + "\n".join(rows) + "\n")
    return root / "labels.csv", root / "images.tar"


@pytest.fixture(scope="module")
def model_dir(dataset: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    labels, images = dataset
    out = tmp_path_factory.mktemp("model")
    code = main(["train", "--labels", str(labels), "--images", str(images), "--out", str(out),
                 "--size", "32", "--epochs", "3", "--width", "0.125", "--hidden", "32",
                 "--batch-size", "16", "--lr", "3e-3", "--val-fraction", "0.25",
                 "--test-fraction", "0.25"])
    assert code == 0
    return out


def test_train_writes_a_complete_model_directory(model_dir: Path) -> None:
    for name in ("pipeline.json", "original.pt", "dehazed.pt", "val_outputs.npz", "val.csv",
                 "test.csv", "train_log.csv", "learning_curves.png"):
        assert (model_dir / name).exists(), name
    spec = json.loads((model_dir / "pipeline.json").read_text())
    assert spec["labels"] == sorted(LABELS)
    assert len(spec["postprocess"]["thresholds"]) == len(LABELS)
    assert spec["training"]["command"].startswith("python -m classifier train")


def test_evaluate_prints_json_last_line(model_dir: Path, dataset: tuple[Path, Path],
                                        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _, images = dataset
    json_file = tmp_path / "result.json"
    assert main(["evaluate", "--model", str(model_dir), "--labels", str(model_dir / "test.csv"),
                 "--images", str(images), "--json", str(json_file)]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["n_images"] == 30
    assert set(last["per_label"]) == set(LABELS)
    assert set(last["per_label"]["bright"]) >= {"f2", "precision", "recall", "support"}
    # these labels are easy: even a 3-epoch tiny network must beat a blind guess
    assert last["f2"] > 0.75
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
    assert last["settings"]["dehaze"] == "stack" and last["f2"] > 0.75


def test_stacking_needs_the_dehazed_network(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    labels, images = dataset
    with pytest.raises(SystemExit, match="needs the dehazed network"):
        main(["train", "--labels", str(labels), "--images", str(images), "--out",
              str(tmp_path), "--no-dehazed-model", "--combine", "stack"])


def test_report_writes_ablation_table_and_charts(model_dir: Path, dataset: tuple[Path, Path],
                                                tmp_path: Path) -> None:
    _, images = dataset
    assert main(["report", "--model", str(model_dir), "--labels", str(model_dir / "test.csv"),
                 "--images", str(images), "--out", str(tmp_path), "--validation-cv"]) == 0
    table = (tmp_path / "report.md").read_text()
    cv = table[table.index("## Cross-validation on the validation outputs"):]
    cv_rows = [line for line in cv.splitlines() if line.startswith("| ") and "CV F2" not in line]
    assert len(cv_rows) == 10 and cv_rows[0].endswith("| +0.0000 ± 0.0000 |")
    assert any(not row.endswith("| +0.0000 ± 0.0000 |") for row in cv_rows[1:])
    assert "lasso instead of ridge" in table and "no TTA" in table
    assert "stacking both networks instead of the per-label choice" in table
    assert (tmp_path / "ablation.png").stat().st_size > 1000
    assert (tmp_path / "per_label_f2.png").stat().st_size > 1000


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
    labels, images = dataset
    args = ["train", "--labels", str(labels), "--images", str(images), "--out", str(tmp_path),
            "--epochs", "2", "--width", "0.125", "--hidden", "16", "--batch-size", "32",
            "--no-dehazed-model", "--max-epochs-this-run", "1"]
    assert main(args) == 1  # paused after one epoch
    assert not (tmp_path / "pipeline.json").exists()
    assert main(args) == 0  # resumed, finished
    log = (tmp_path / "train_log.csv").read_text().splitlines()
    assert [row.split(",")[1] for row in log[1:]] == ["1", "2"]


def test_networks_trained_in_separate_runs_then_finished(dataset: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    labels, images = dataset
    args = ["train", "--labels", str(labels), "--images", str(images), "--out", str(tmp_path),
            "--epochs", "1", "--width", "0.125", "--hidden", "16", "--batch-size", "32"]
    assert main([*args, "--network", "dehazed"]) == 1  # this network only, model unfinished
    assert (tmp_path / "dehazed.pt").exists() and not (tmp_path / "original.pt").exists()
    assert not (tmp_path / "pipeline.json").exists()
    assert (tmp_path / "train_log_dehazed.csv").exists()
    assert main([*args, "--network", "original"]) == 1
    dehazed_weights = (tmp_path / "dehazed.pt").read_bytes()
    assert main(args) == 0  # both networks resumed as finished, nothing retrained
    assert (tmp_path / "dehazed.pt").read_bytes() == dehazed_weights
    log = (tmp_path / "train_log.csv").read_text().splitlines()
    assert sorted(row.split(",")[0] for row in log[1:]) == ["dehazed", "original"]
    assert json.loads((tmp_path / "pipeline.json").read_text())["training"]["epochs"] == {
        "original": 1, "dehazed": 1}


def test_continued_training_starts_from_the_given_model(model_dir: Path,
                                                        dataset: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    import torch

    from classifier.model import ModelConfig, create_model
    from classifier.train import _load_initial_weights

    spec = json.loads((model_dir / "pipeline.json").read_text())
    net = create_model(ModelConfig(**spec["model"]))
    _load_initial_weights(net, model_dir / "original.pt")
    stored = torch.load(model_dir / "original.pt", weights_only=True)["state_dict"]
    for key, value in net.state_dict().items():
        assert torch.equal(value, stored[key].to(value.dtype)), key
    other = create_model(ModelConfig(**{**spec["model"], "hidden": 8}))
    with pytest.raises(ValueError, match="--init-from"):
        _load_initial_weights(other, model_dir / "original.pt")

    labels, images = dataset
    args = ["train", "--labels", str(labels), "--images", str(images), "--out", str(tmp_path),
            "--size", "32", "--epochs", "1", "--width", "0.125", "--hidden", "32",
            "--batch-size", "16", "--lr", "1e-7", "--val-fraction", "0.25",
            "--test-fraction", "0.25", "--init-from", str(model_dir)]
    assert main(args) == 0
    # at a negligible learning rate the continued networks keep the weights they started from
    for name in ("original", "dehazed"):
        start = torch.load(model_dir / f"{name}.pt", weights_only=True)["state_dict"]
        end = torch.load(tmp_path / f"{name}.pt", weights_only=True)["state_dict"]
        conv = next(key for key in start if key.endswith("weight") and start[key].ndim == 4)
        assert torch.allclose(start[conv].float(), end[conv].float(), atol=1e-3), name
    with pytest.raises(FileNotFoundError):
        _load_initial_weights(net, tmp_path / "missing.pt")
    # another split would validate on images the starting networks trained on
    with pytest.raises(SystemExit, match="were training images of that model"):
        main([*args, "--out", str(tmp_path / "other"), "--seed", "1"])


def test_ensemble_members_trained_in_separate_runs_are_averaged(
        model_dir: Path, dataset: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from classifier.inference import predict_batches
    from classifier.predictor import Predictor
    from classifier.store import ValOutputs, load_network, read_network_file

    labels, images = dataset
    args = ["train", "--labels", str(labels), "--images", str(images), "--out", str(tmp_path),
            "--size", "32", "--width", "0.125", "--hidden", "32", "--batch-size", "16",
            "--lr", "3e-3", "--val-fraction", "0.25", "--test-fraction", "0.25",
            "--init-from", str(model_dir), "--weights", "int8"]
    with pytest.raises(SystemExit, match="--network"):
        main([*args, "--epochs", "1", "--member", "1"])
    # member 0 of each kind: the starting networks as they are (zero epochs)
    assert main([*args, "--epochs", "0", "--network", "original"]) == 1
    assert main([*args, "--epochs", "0", "--network", "dehazed"]) == 1
    # two restarts of the original network with their own seeds and a cosine schedule
    # (member 2 with its own architecture: the last VGG stage at twice the resolution)
    for member, extra in (("1", []), ("2", ["--keep-resolution-after", "4"])):
        assert main([*args, "--epochs", "2", "--schedule", "cosine", "--network", "original",
                     "--member", member, *extra]) == 1
    assert (tmp_path / "train_log_original-1.csv").exists()
    # finish (no training); member 0 stays fp16, the others int8
    assert main([*args, "--epochs", "2", "--schedule", "cosine",
                 "--fp16-networks", "original"]) == 0
    dtypes = {name: {v.dtype for v in torch.load(tmp_path / f"{name}.pt",
                                                   weights_only=True)["state_dict"].values()}
              for name in ("original", "original-1")}
    assert torch.int8 not in dtypes["original"] and torch.int8 in dtypes["original-1"]

    spec = json.loads((tmp_path / "pipeline.json").read_text())
    assert spec["members"] == {"original": ["original", "original-1", "original-2"],
                               "dehazed": ["dehazed"]}
    assert spec["training"]["epochs"] == {"original": 0, "original-1": 2, "original-2": 2,
                                          "dehazed": 0}
    # member 0 kept the starting weights (stored as int8: within a quantisation step)
    _, start = read_network_file(model_dir / "original.pt")
    _, kept = read_network_file(tmp_path / "original.pt")
    for key, value in start.items():
        step = value.abs().max() / 127 if value.ndim >= 2 else 1e-3 * value.abs().max()
        assert torch.allclose(value.float(), kept[key].float(), atol=float(step) + 1e-6), key
    nets = [load_network(tmp_path / f"{n}.pt", torch.device("cpu"))
            for n in spec["members"]["original"]]
    assert [n.config.keep_resolution_after for n in nets] == [0, 0, 4]
    first_conv = next(k for k, v in start.items() if v.ndim == 4)
    w1, w2 = (net.state_dict()[first_conv] for net in nets[1:])
    assert not torch.allclose(w1, w2)  # different seeds, different members
    # the cosine schedule decays the learning rate within a run
    log = (tmp_path / "train_log.csv").read_text().splitlines()
    header = log[0].split(",")
    lrs = [float(r.split(",")[header.index("lr")]) for r in log[1:]
           if r.startswith("original-1,")]
    assert lrs[0] == pytest.approx(3e-3) and lrs[1] < lrs[0]

    # stored validation outputs: a kind's output is its members' mean, members kept apart
    val = ValOutputs.load(tmp_path / "val_outputs.npz")
    members = val.member_outputs("original", 8)
    assert len(members) == 3
    np.testing.assert_allclose(val.get("original", 8), np.mean(members, axis=0), atol=1e-6)
    np.testing.assert_allclose(val.get("original", 8, members=1), members[0])
    assert val.member_outputs("dehazed", 8) == []

    # the predictor averages the members' TTA outputs
    predictor = Predictor(tmp_path, device="cpu")
    assert predictor.is_ensemble and len(predictor.networks["original"]) == 3
    prepared = np.stack([np.asarray(Image.new("RGB", (32, 32), (40 * i, 90, 30)))
                         for i in range(4)])
    out = predictor.network_outputs(prepared, needed=["original"])["original"]
    expected = np.mean([predict_batches(n, prepared, torch.device("cpu"), 8) for n in nets],
                       axis=0)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    one = predictor.network_outputs(prepared, needed=["original"], members=1)["original"]
    np.testing.assert_allclose(one, predict_batches(nets[0], prepared, torch.device("cpu"), 8),
                               atol=1e-5)

    assert val.member_names("original") == ["original", "original-1", "original-2"]
    np.testing.assert_allclose(val.with_members("original", ["original-2"]).get("original", 1),
                               val.member_outputs("original", 1)[2])
    # every subset of the members, scored by validation CV against member 0 alone
    capsys.readouterr()
    assert main(["members", "--model", str(tmp_path), "--baseline", "original"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(rows) == 7 and [r["f2"] for r in rows] == sorted((r["f2"] for r in rows),
                                                                 reverse=True)
    alone = next(r for r in rows if r["members"] == ["original"])
    assert alone["diff"] == 0 and any(r["diff"] != 0 for r in rows)
    assert all(0 <= r["f2"] <= 1 for r in rows)
    with pytest.raises(SystemExit, match="no stored outputs of original-7"):
        main(["members", "--model", str(tmp_path), "--baseline", "original-7"])

    # a finished ensemble refitted without its checkpoints: zero epochs keep every member
    # as it is (member 2 in its own architecture), stored int8 weights stay the same
    refit = ["train", "--labels", str(labels), "--images", str(images), "--out",
             str(tmp_path / "refit"), "--size", "32", "--width", "0.125", "--hidden", "32",
             "--val-fraction", "0.25", "--test-fraction", "0.25", "--init-from", str(tmp_path),
             "--weights", "int8", "--fp16-networks", "original"]
    for member in ("0", "1", "2"):
        assert main([*refit, "--epochs", "0", "--network", "original", "--member", member]) == 1
    assert main([*refit, "--epochs", "0", "--network", "dehazed"]) == 1
    assert main([*refit, "--epochs", "0"]) == 0
    again = json.loads((tmp_path / "refit/pipeline.json").read_text())
    assert again["members"] == spec["members"]
    for name in ("original", "original-1", "original-2", "dehazed"):
        before = torch.load(tmp_path / f"{name}.pt", weights_only=True)
        after = torch.load(tmp_path / "refit" / f"{name}.pt", weights_only=True)
        assert before["config"] == after["config"], name
        for key, value in before["state_dict"].items():
            assert torch.equal(value, after["state_dict"][key]), (name, key)
    np.testing.assert_allclose(ValOutputs.load(tmp_path / "refit/val_outputs.npz").get(
        "original", 8), val.get("original", 8), atol=1e-6)
    # --members picks the networks that make the model (member 0 may be left out)
    assert main([*refit, "--epochs", "0", "--members", "original-2,dehazed,original-1"]) == 0
    chosen = json.loads((tmp_path / "refit/pipeline.json").read_text())
    assert chosen["members"] == {"original": ["original-1", "original-2"], "dehazed": ["dehazed"]}
    np.testing.assert_allclose(ValOutputs.load(tmp_path / "refit/val_outputs.npz").get(
        "original", 8), np.mean(members[1:], axis=0), atol=1e-6)
    assert len(Predictor(tmp_path / "refit", device="cpu").networks["original"]) == 2
    with pytest.raises(SystemExit, match="no trained original-7"):
        main([*refit, "--epochs", "0", "--members", "original-7,dehazed"])
    with pytest.raises(SystemExit, match="names no dehazed network"):
        main([*refit, "--epochs", "0", "--members", "original-1"])

    # the report measures the ensemble against its first members alone
    capsys.readouterr()
    assert main(["report", "--model", str(tmp_path), "--labels", str(tmp_path / "test.csv"),
                 "--images", str(images), "--out", str(tmp_path / "report")]) == 0
    assert "no ensemble (one network of each kind)" in (tmp_path / "report/report.md").read_text()


def test_models_without_ensembles_have_no_ensemble_ablation(model_dir: Path) -> None:
    from classifier.predictor import Predictor

    predictor = Predictor(model_dir, device="cpu")
    assert not predictor.is_ensemble
    assert set(predictor.networks) == {"original", "dehazed"}


def test_distillation_from_a_teacher_on_unlabelled_images(
        model_dir: Path, dataset: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from classifier.data import list_image_names
    from classifier.distill import Distillation

    labels, images = dataset
    # unlabelled chips: a folder of images no CSV names
    folder = tmp_path / "unlabeled"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(20):
        chip(rng, {"reddish"} if i % 2 else {"bright"}).save(folder / f"u_{i}.jpg")
    (folder / "notes.txt").write_text("not an image")
    assert list_image_names(folder) == sorted(f"u_{i}" for i in range(20))

    spec = json.loads((model_dir / "pipeline.json").read_text())
    distill = Distillation.load(model_dir, spec["labels"], folder, 32, 0.5, "cpu")
    assert distill.unlabeled.shape == (20, 32, 32, 3)
    raw = distill.unlabeled[:4]
    targets = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], np.float32)
    x, y = distill.training_set("original", raw, raw, targets)
    assert x.shape == (24, 32, 32, 3) and y.shape == (24, 3)
    teacher = distill.soft_targets("original", raw)
    np.testing.assert_allclose(y[:4], 0.5 * targets + 0.5 * teacher, atol=1e-6)
    np.testing.assert_allclose(y[4:], distill.soft_targets("original", distill.unlabeled),
                               atol=1e-6)
    # the dehazed network gets dehazed unlabelled chips, with the teacher's dehazed targets
    xd, _ = distill.training_set("dehazed", raw, raw, targets)
    assert not np.array_equal(xd[4:], distill.unlabeled)

    args = ["train", "--labels", str(labels), "--images", str(images), "--out", str(tmp_path / "m"),
            "--size", "32", "--epochs", "1", "--width", "0.125", "--hidden", "32",
            "--batch-size", "16", "--val-fraction", "0.25", "--test-fraction", "0.25",
            "--teacher", str(model_dir), "--unlabeled", str(folder), "--network", "original"]
    assert main(args) == 1
    assert "distillation: 80 training images" in capsys.readouterr().out  # 60 + 20
    with pytest.raises(SystemExit, match="need a --teacher"):
        main([a for a in args if a not in ("--teacher", str(model_dir))])
    with pytest.raises(SystemExit, match="--teacher .* were training images"):
        main([*args, "--seed", "1", "--out", str(tmp_path / "other")])
