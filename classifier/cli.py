"""Command line: ``python -m classifier {train,assemble,evaluate,report,predict,predict-scene,
novelty,dehaze}``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from classifier import assemble, scenes, train
from classifier.dehaze import dehaze
from classifier.evaluation import (
    Evaluator,
    Setting,
    ablations,
    paired_bootstrap,
    per_label_table,
    validation_cv,
)
from classifier.model import resolve_device
from classifier.predictor import Predictor
from classifier.store import CLASSIFIER_DIRS, read_pipeline
from imagery import partial, plots, rasters
from imagery.datasets import load_images, read_labels
from imagery.decode import ImageDecodeError, decode_image


def _threshold(value: str) -> str | float:
    if value == "tuned":
        return value
    try:
        number = float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError("use 'tuned' or a number in [0, 1]") from exc
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError("a threshold must be in [0, 1]")
    return number


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="default", help="model directory, or 'default'")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", required=True, help="Planet-format CSV: image_name,tags")
    parser.add_argument("--images", required=True, help="folder or .tar of images")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m classifier", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train.get_args_parser(sub.add_parser("train", help="train one network (resumable)"))
    assemble.get_args_parser(sub.add_parser(
        "assemble", help="make a model from trained networks: ensembles, per-label choice, "
                         "recalibration layer, thresholds"))

    ev = sub.add_parser("evaluate", help="F2 overall and per label; stages switchable")
    _add_model_args(ev)
    _add_data_args(ev)
    ev.add_argument("--json", help="also write the result JSON to this file")
    ev.add_argument("--tta", type=int, choices=range(1, 9), default=8, metavar="{1..8}",
                    help="test-time augmentation views (1 = off)")
    ev.add_argument("--calibration", choices=("none", "lasso", "ridge"), default=None,
                    help="recalibration layer (default: the model's)")
    ev.add_argument("--thresholds", type=_threshold, default="tuned",
                    help="'tuned' (per-label, F2-optimal) or one fixed threshold")
    ev.add_argument("--no-dehaze-choice", action="store_true",
                    help="use only the original-image network")
    ev.add_argument("--dehazed-only", action="store_true", help="use only the dehazed network")
    ev.add_argument("--combine", choices=("choice", "stack"), default=None,
                    help="per-label model choice or stacking of both networks "
                         "(default: the model's)")
    ev.add_argument("--decision", choices=("threshold", "expected-f2"), default="threshold")

    rep = sub.add_parser("report", help="ablation table and charts")
    _add_model_args(rep)
    _add_data_args(rep)
    rep.add_argument("--out", required=True, help="folder for report.md and PNG charts")
    rep.add_argument("--validation-cv", action="store_true",
                     help="also compare the settings by cross-validation on the model's stored "
                          "validation outputs (choose configurations there, not on test)")

    pred = sub.add_parser("predict", help="tags and probabilities for image files")
    _add_model_args(pred)
    pred.add_argument("--top", type=int, default=5, help="probabilities shown per file")
    pred.add_argument("files", nargs="+")

    scene = sub.add_parser("predict-scene", help="tile a whole scene (GeoTIFF or large "
                                                 "image) and tag every tile")
    _add_model_args(scene)
    scene.add_argument("scene", help="GeoTIFF, or a large JPEG/PNG/TIFF")
    scene.add_argument("--out", required=True, help="GeoJSON of the tiles (WGS84 polygons, "
                                                    "tags and probabilities)")
    scene.add_argument("--raster", help="also write a float32 GeoTIFF: one band per label, "
                                        "one cell per tile, the scene's CRS")
    scene.add_argument("--tile-size", type=int, default=256, help="chip footprint in px")
    scene.add_argument("--overlap", type=int, default=0, help="px shared by neighbours")
    scene.add_argument("--edge", choices=rasters.EDGES, default="pad",
                       help="partial edge tiles: pad with black, or drop")
    scene.add_argument("--partial-view", choices=partial.VIEWS, default=partial.DEFAULT_VIEW,
                       help="what the model sees of a partial tile: its data reflected over "
                            "the padding (mirror, chosen on validation), the mean colour "
                            "(fill), the data alone resized (crop), or the padded tile (pad)")
    scene.add_argument("--bands", type=_bands, default=None, metavar="R,G,B",
                       help="1-based bands shown as red, green, blue (default: from the "
                            "file, else Planet's B,G,R,NIR order -> 3,2,1)")

    nov = sub.add_parser("novelty", help="fit a model's 'unlike the training imagery' "
                                         "detector on its validation images")
    nov.add_argument("--model", default="default", help="model directory, or 'default'")
    nov.add_argument("--images", required=True, help="folder or .tar with its val images")
    nov.add_argument("--device", default="auto")

    dh = sub.add_parser("dehaze", help="dehaze one image (dark channel prior)")
    dh.add_argument("input")
    dh.add_argument("output")
    return parser


def _bands(value: str) -> tuple[int, int, int]:
    try:
        bands = tuple(int(v) for v in value.split(","))
    except ValueError:
        bands = ()
    if len(bands) != 3 or min(bands) < 1:
        raise argparse.ArgumentTypeError("give three 1-based band numbers, e.g. 3,2,1")
    return bands  # type: ignore[return-value]


def _load(args: argparse.Namespace) -> Predictor:
    return Predictor(args.model, device=args.device, batch_size=args.batch_size)


def cmd_evaluate(args: argparse.Namespace) -> int:
    predictor = _load(args)
    shipped = predictor.postprocessor.config
    combined = {"choice": "per-label", "stack": "stack", None: shipped.dehaze}[args.combine]
    dehaze = "original" if args.no_dehaze_choice else "dehazed" if args.dehazed_only \
        else combined
    post = replace(shipped, dehaze=dehaze, calibration=args.calibration or shipped.calibration,
                   thresholds=args.thresholds, decision=args.decision)
    result = Evaluator(predictor, args.labels, args.images).run(
        Setting("evaluate", views=args.tta, post=post))
    print(per_label_table(result["per_label"]))
    if result["skipped"]:
        print(f"{len(result['skipped'])} images could not be read and were skipped")
    print(f"\nF2 (sample-averaged) = {result['f2']:.4f} on {result['n_images']} images "
          f"[tta={args.tta}, dehaze={dehaze}, calibration={post.calibration}, "
          f"thresholds={post.thresholds}, decision={post.decision}]")
    payload = {"f2": result["f2"], "n_images": result["n_images"],
               "per_label": result["per_label"], "model": predictor.version,
               "settings": {"tta": args.tta, "dehaze": dehaze, "calibration": post.calibration,
                            "thresholds": post.thresholds, "decision": post.decision},
               "skipped": len(result["skipped"])}
    if args.json:
        Path(args.json).write_text(json.dumps(payload, indent=1))
    print(json.dumps(payload))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    predictor = _load(args)
    evaluator = Evaluator(predictor, args.labels, args.images)
    results = [evaluator.run(s) for s in _ablations(predictor)]
    full = results[0]
    lines = [f"# Ablation report: {predictor.version}", "",
             f"{full['n_images']} images from `{args.labels}`; sample-averaged F2. Every "
             "variant is refitted on the model's stored validation outputs. The interval "
             "is a paired bootstrap 95% interval of the difference (2,000 resamples of "
             "the images).", "",
             "| setting | F2 | vs full | 95% interval |", "|---|---:|---:|---:|"]
    for r in results:
        r["diff"] = r["f2"] - full["f2"]
        r["diff_interval"] = paired_bootstrap(r["per_image"], full["per_image"])
        low, high = r["diff_interval"]
        lines.append(f"| {r['setting']} | {r['f2']:.4f} | {r['diff']:+.4f} | "
                     f"[{low:+.4f}, {high:+.4f}] |")
    if "dehazed" not in predictor.networks:
        combined = "This model has no dehazed network: nothing is dehazed."
    elif predictor.postprocessor.config.dehaze == "stack":
        combined = "Both networks' probabilities feed the recalibration layer (stacking)."
    else:
        combined = ("Labels taken from the dehazed network: "
                    + (", ".join(full["use_dehazed"]) or "none"))
    lines += ["", combined, "", *_violations_table(results),
              "## Per-label scores of the full pipeline", "", per_label_table(full["per_label"]),
              "", "![ablation](ablation.png)", "", "![per-label F2](per_label_f2.png)", ""]
    if args.validation_cv:
        cv_lines = _validation_cv_table(evaluator)
        lines[-5:-5] = cv_lines
        print("\n".join(cv_lines))
    (out / "report.md").write_text("\n".join(lines))
    (out / "report.json").write_text(json.dumps(
        [{k: v for k, v in r.items() if k not in ("skipped", "per_image")} for r in results],
        indent=1))
    plots.ablation_bars([(r["setting"], r["f2"]) for r in results], out / "ablation.png")
    plots.label_bars(full["per_label"], out / "per_label_f2.png",
                     f"per-label F2, full pipeline (F2 {full['f2']:.4f})")
    print("\n".join(lines[4:4 + len(results) + 2]))
    print(f"wrote {out / 'report.md'}, ablation.png, per_label_f2.png")
    return 0


def _ablations(predictor: Predictor) -> list[Setting]:
    """The model's ablation settings; each member of an ensemble also alone."""
    alone = [(name, f"{net.config.arch}, {net.config.input_size} px")
             for kind, names in predictor.member_names.items() if len(names) > 1
             for name, net in zip(names, predictor.networks[kind])]
    return ablations(predictor.postprocessor.config, predictor.is_ensemble,
                     predictor.postprocessor.consistent, alone,
                     dehazed="dehazed" in predictor.networks)


def _violations_table(results: list[dict]) -> list[str]:
    """Shares of predicted sets that break the labels' rule (Planet's weather), per
    setting; nothing for labels without a rule."""
    if not results[0]["violations"]:
        return []
    lines = ["Predicted sets that break Planet's labelling rule (exactly one weather label; "
             "nothing else when cloudy):", "",
             "| setting | two or more weather | no weather | cloudy with land |",
             "|---|---:|---:|---:|"]
    for r in results:
        v = r["violations"]
        lines.append(f"| {r['setting']} | {v['two_or_more_weather']:.1%} | "
                     f"{v['no_weather']:.1%} | {v['cloudy_with_land']:.1%} |")
    return [*lines, ""]


def _validation_cv_table(evaluator: Evaluator) -> list[str]:
    settings = _ablations(evaluator.predictor)
    rows = validation_cv(evaluator.val, settings, labels=evaluator.predictor.labels)
    lines = ["## Cross-validation on the validation outputs", "",
             f"{len(evaluator.val.targets)} validation images, 5 folds x 2 shuffles: each "
             "setting fitted on 4/5 and scored on 1/5. Differences are paired per split "
             "(± standard error).", "",
             "| setting | CV F2 | vs full |", "|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['f2']:.4f} | {r['diff']:+.4f} ± {r['diff_se']:.4f} |")
    return [*lines, ""]


def cmd_predict(args: argparse.Namespace) -> int:
    predictor = _load(args)
    failed = 0
    for path, result in zip(args.files, predictor.predict_files(args.files)):
        if isinstance(result, ImageDecodeError):
            failed += 1
            print(f"{path}: ERROR: {result}")
            continue
        top = sorted(result.probabilities.items(), key=lambda kv: -kv[1])[:args.top]
        print(f"{path}: {' '.join(result.tags) or '(no tags)'}   "
              + "  ".join(f"{label}={p:.3f}" for label, p in top))
    return 1 if failed else 0


def cmd_predict_scene(args: argparse.Namespace) -> int:
    try:
        config = rasters.TilingConfig(args.tile_size, args.overlap, args.edge, args.bands)
    except ValueError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    predictor = _load(args)
    try:
        with rasters.SceneReader(args.scene, config) as scene:
            total = len(scene.grid)
        with tqdm(total=total, unit="tile", desc=Path(args.scene).name) as bar:
            result = scenes.predict_scene(args.scene, predictor, config, args.batch_size,
                                          progress=bar.update,
                                          partial_view=args.partial_view)
    except rasters.SceneError as exc:
        print(f"{args.scene}: ERROR: {exc}", file=sys.stderr)
        return 1
    Path(args.out).write_text(json.dumps(result.geojson()))
    print(f"wrote {args.out}: {len(result.tiles)} tiles tagged, {result.skipped} all-nodata "
          f"tiles skipped ({result.grid.rows} rows x {result.grid.cols} cols)")
    if args.raster:
        result.write_raster(args.raster)
        print(f"wrote {args.raster}: {len(result.labels)} bands (one per label), "
              f"{result.grid.cols}x{result.grid.rows} cells")
    return 0


def cmd_dehaze(args: argparse.Namespace) -> int:
    try:
        image = decode_image(args.input)
    except ImageDecodeError as exc:
        print(f"{args.input}: ERROR: {exc}", file=sys.stderr)
        return 1
    Image.fromarray(dehaze(np.ascontiguousarray(image))).save(args.output)
    print(f"wrote {args.output}")
    return 0


def cmd_novelty(args: argparse.Namespace) -> int:
    """The detector of an assembled model, from the validation split it was fitted on."""
    model_dir = CLASSIFIER_DIRS.resolve(args.model)
    spec = read_pipeline(model_dir)
    table = read_labels(model_dir / "val.csv")
    data = load_images(table, args.images, spec["image_size"], spec["labels"])
    if data.errors:
        raise SystemExit(f"{len(data.errors)} validation images cannot be read from "
                         f"{args.images} (e.g. {next(iter(data.errors))})")
    device = resolve_device(args.device)
    record = assemble.fit_model_novelty(model_dir, spec["members"]["original"][0],
                                        data.images, device)
    print(json.dumps(record))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.command == "train":
        return 0 if train.main(args) else 1  # 1: paused by --max-epochs-this-run
    if args.command == "assemble":
        assemble.main(args)
        return 0
    commands = {"evaluate": cmd_evaluate, "report": cmd_report,
                "predict": cmd_predict, "predict-scene": cmd_predict_scene,
                "dehaze": cmd_dehaze, "novelty": cmd_novelty}
    return commands[args.command](args)
