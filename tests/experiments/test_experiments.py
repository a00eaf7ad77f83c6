"""Smoke tests of the research runs in ``experiments/``: each imports without path hacks
and runs end to end on tiny generated data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from classifier.cli import main as classifier
from experiments import distill, members, postprocess_variants
from imagery.datasets import list_image_names
from tests.synthetic import chip, train_args, write_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def ensemble(dataset: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    for extra in ([], ["--member", "1"], ["--network", "dehazed"]):
        assert classifier(train_args(dataset, run, "--epochs", "2", "--lr", "3e-3",
                                     *extra)) == 0
    model = tmp_path_factory.mktemp("model")
    assert classifier(["assemble", str(run / "original.pt"), str(run / "original-1.pt"),
                       str(run / "dehazed.pt"), "--images", str(dataset[1]),
                       "--out", str(model)]) == 0
    return model


def test_members_scores_every_subset_by_validation_cv(ensemble: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    rows = members.main(["--model", str(ensemble), "--baseline", "original"])
    assert len(rows) == 3 and [r["f2"] for r in rows] == sorted((r["f2"] for r in rows),
                                                                 reverse=True)
    alone = next(r for r in rows if r["members"] == ["original"])
    assert alone["diff"] == 0 and all(0 <= r["f2"] <= 1 for r in rows)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == rows
    with pytest.raises(SystemExit, match="no stored outputs of original-7"):
        members.main(["--model", str(ensemble), "--baseline", "original-7"])


def test_postprocess_variants_run_on_the_validation_outputs(
        ensemble: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = json.loads((ensemble / "pipeline.json").read_text())["labels"]
    # the weather rules need Planet's weather labels; on made-up labels only the layers run
    assert "cloudy" not in labels
    val = postprocess_variants.ValOutputs.load(ensemble / "val_outputs.npz")
    shipped = postprocess_variants.Setting("shipped")
    keep = postprocess_variants.adjusted_cv_scores(val, shipped, lambda decided, _s: decided)
    np.testing.assert_allclose(keep, postprocess_variants.cv_scores(val, shipped))
    nothing = postprocess_variants.adjusted_cv_scores(
        val, shipped, lambda decided, _s: np.zeros_like(decided))
    assert (nothing < keep).all()


def test_distillation_trains_a_network_on_teacher_targets(
        ensemble: Path, dataset: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "unlabeled"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(20):
        chip(rng, {"reddish"} if i % 2 else {"bright"}).save(folder / f"u_{i}.jpg")
    (folder / "notes.txt").write_text("not an image")
    assert list_image_names(folder) == sorted(f"u_{i}" for i in range(20))

    spec = json.loads((ensemble / "pipeline.json").read_text())
    teacher = distill.Distillation.load(ensemble, spec["labels"], folder, 32, 0.5, "cpu")
    raw = teacher.unlabeled[:4]
    targets = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], np.float32)
    x, y = teacher.training_set("original", raw, raw, targets)
    assert x.shape == (24, 32, 32, 3) and y.shape == (24, 3)
    np.testing.assert_allclose(y[:4], 0.5 * targets + 0.5 * teacher.soft_targets("original", raw),
                               atol=1e-6)

    args = train_args(dataset, tmp_path / "student", "--epochs", "1", "--teacher",
                      str(ensemble), "--unlabeled", str(folder))[1:]  # no "train" here
    path = distill.main(args)
    assert path is not None and path.exists()
    assert "distillation: 80 training images" in capsys.readouterr().out  # 60 + 20
    info = json.loads(path.with_suffix(".json").read_text())
    assert info["provenance"]["command"].startswith("python -m experiments.distill")
    with pytest.raises(SystemExit, match="--teacher .* were its training images"):
        distill.main([*args[:args.index("--out")], "--out", str(tmp_path / "other"),
                      *args[args.index("--out") + 2:], "--seed", "1"])


def test_novelty_rates_auroc_and_the_loop_driver_import():
    from experiments import learning_loop_api, novelty_rates

    inside, outside = np.array([0.1, 0.2, 0.3]), np.array([0.25, 0.9])
    assert novelty_rates.auroc(inside, outside) == pytest.approx(5 / 6)
    assert novelty_rates.auroc(inside, inside + 10) == 1.0
    assert callable(learning_loop_api.main)


def test_partial_tiles_scores_every_view_on_validation_cuts(ensemble: Path,
                                                            dataset: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    from experiments import partial_tiles

    report = partial_tiles.main(["--model", str(ensemble), "--chips", str(dataset[1]),
                                 "--n", "6", "--out", str(tmp_path)])
    views = {row["view"] for row in report["rows"]}
    assert views == {"whole chip", "pad", "fill", "mirror", "crop"}
    assert len(report["rows"]) == 1 + 3 * 4 and report["best"] in views
    assert all(0 <= row["f2"] <= 1 for row in report["rows"])
    assert (tmp_path / "partial_tiles.png").stat().st_size > 0
    padded, window = partial_tiles.cut(np.full((8, 8, 3), 9, np.uint8), "corner", 0.25)
    assert window == (0, 0, 4, 4) and padded[4:].max() == 0 and padded[:4, :4].min() == 9
    with pytest.raises(SystemExit, match="validation"):
        partial_tiles.main(["--model", str(ensemble), "--chips", str(dataset[1]),
                            "--split", "test"])


def test_land_sets_by_expected_f2_match_brute_force() -> None:
    """The best top-k of the land labels is the best of all their subsets, and its value
    is the expected F2 computed by enumerating every outcome."""
    from itertools import product

    from experiments.rule_decoding import expected_land_f2

    rng = np.random.default_rng(3)
    land = rng.uniform(0, 1, (12, 4))
    hit = rng.dirichlet([1, 1, 1], 12)[:, :2]  # weather right, wrong (rest: cloudy)
    chosen, value = expected_land_f2(land, hit)
    for row in range(len(land)):
        best = -1.0
        for subset in product([0, 1], repeat=4):
            expected = 0.0
            for truth in product([0, 1], repeat=4):
                chance = np.prod([p if t else 1 - p for p, t in zip(land[row], truth)])
                h = sum(s and t for s, t in zip(subset, truth))
                r = sum(t and not s for s, t in zip(subset, truth))
                k = 1 + sum(subset)
                for right, share in ((1, hit[row, 0]), (0, hit[row, 1])):
                    expected += chance * share * 5 * (right + h) / (4 * (1 + h + r) + k)
            if subset == tuple(chosen[row].astype(int)):
                assert expected == pytest.approx(value[row])
            best = max(best, expected)
        assert value[row] == pytest.approx(best)


def _planet_like_model(folder: Path, n: int = 400) -> Path:
    """A model directory holding only labels and validation outputs with Planet's
    structure: one weather label per chip, nothing else when cloudy."""
    from classifier.store import ValOutputs

    labels = ["agriculture", "clear", "cloudy", "haze", "partly_cloudy", "primary", "road",
              "water"]
    rng = np.random.default_rng(0)
    y = np.zeros((n, len(labels)), np.float32)
    weather = rng.choice([1, 2, 3, 4], n, p=[0.6, 0.1, 0.1, 0.2])
    y[np.arange(n), weather] = 1
    land = [0, 5, 6, 7]
    y[:, land] = rng.uniform(0, 1, (n, 4)) < [0.3, 0.9, 0.2, 0.2]
    y[np.ix_(weather == 2, land)] = 0
    probs = np.clip(0.7 * y + rng.normal(0.15, 0.2, y.shape), 0.01, 0.99).astype(np.float32)
    folder.mkdir()
    (folder / "pipeline.json").write_text(json.dumps({"labels": labels}))
    ValOutputs([f"c{i}" for i in range(n)], y,
               {"original_tta8": probs}).save(folder / "val_outputs.npz")
    return folder


def test_rule_decoding_scores_each_decision_against_the_shipped_rule(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from experiments import rule_decoding

    table = rule_decoding.main(["--model", str(_planet_like_model(tmp_path / "m"))])
    shipped = table.pop("shipped (thresholds, then the rule)")
    assert shipped["diff"] == 0 and 0.5 < shipped["f2"] <= 1
    assert len(table) == 11 and all(0.3 < row["f2"] <= 1 for row in table.values())
    assert "land thresholds per chosen weather" in capsys.readouterr().out


def test_scale_tta_scores_stored_outputs_as_the_shipped_ones(ensemble: Path,
                                                             tmp_path: Path) -> None:
    """Outputs at the trained side itself (the stored ones, in another order) score
    exactly as the shipped model; other outputs do not."""
    from classifier.store import MEMBER_PREFIX, ValOutputs
    from experiments import scale_tta

    val = ValOutputs.load(ensemble / "val_outputs.npz")
    members = val.member_names("original")
    order = np.random.default_rng(0).permutation(len(val.names))
    np.savez_compressed(tmp_path / "val_32.npz", names=np.array(val.names)[order],
                        **{m: val.probs[f"{MEMBER_PREFIX}{m}_tta8"][order] for m in members})
    np.savez_compressed(tmp_path / "val_64.npz", names=np.array(val.names),
                        **{m: np.full_like(val.probs[f"{MEMBER_PREFIX}{m}_tta8"], 0.5)
                           for m in members})
    table = scale_tta.main(["--model", str(ensemble), "--score", str(tmp_path)])
    assert table["32 alone"]["diff"] == pytest.approx(0, abs=1e-6)
    assert table["32 averaged"]["diff"] == pytest.approx(0, abs=1e-6)
    assert table["64 alone"]["diff"] < 0


def test_knn_votes_are_the_labels_of_the_nearest_training_chips() -> None:
    from experiments.knn_votes import votes

    train = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [0.2, 1.0]], np.float16)
    targets = np.array([[1, 0], [1, 1], [0, 1], [0, 1], [0, 0]], np.float32)
    queries = np.array([[5, 0.1], [0, 3]], np.float32)  # cosine: the length does not count
    np.testing.assert_allclose(votes(train, targets, queries, k=2), [[1, 0.5], [0, 1]])
    np.testing.assert_allclose(votes(train, targets, queries, k=3, batch=1),
                               [[2 / 3, 1 / 3], [0, 2 / 3]])


def test_other_networks_scores_another_models_outputs_beside_these(ensemble: Path,
                                                                   tmp_path: Path) -> None:
    from classifier.store import ValOutputs
    from experiments import other_networks

    table = other_networks.main(["--model", str(ensemble),
                                 "--other", str(ensemble / "val_outputs.npz")])
    assert table["this model as shipped"]["diff"] == 0
    assert len(table) == 7 and all(0 <= row["f2"] <= 1 for row in table.values())
    val = ValOutputs.load(ensemble / "val_outputs.npz")
    ValOutputs(val.names[::-1], val.targets[::-1], val.probs).save(tmp_path / "other.npz")
    with pytest.raises(SystemExit, match="same chips"):
        other_networks.main(["--model", str(ensemble), "--other", str(tmp_path / "other.npz")])
