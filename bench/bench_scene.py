"""Whole scenes end to end: tiles/s of a large 4-band 16-bit GeoTIFF through the web
app's path against the predictor alone on the same chips, and the worker's peak memory.

    python bench/bench_scene.py [--side 10000] [--chunk 64] [--keep DIR] [--smoke]

1. A ``--side`` x ``--side`` px, 4-band (Planet's B, G, R, NIR), uint16 GeoTIFF (UTM,
   3 m pixels, tiled 256 px, deflate; smooth fields + noise, a nodata corner) is written
   strip by strip, never whole in memory.
2. **End to end** in a fresh process (this script with ``--child e2e``): models loaded
   and warmed up on a small scene first (not timed), then timed: ``ingest.add_files`` of
   the file as a request's temporary file (hashing, storing, reading its header) +
   ``recognition.process_batch`` (the worker: overview and stretch, tile rows read in
   windows, chip files, tiles and items
   committed, then per chunk of ``--chunk`` decode, one forward pass, display copies,
   predictions, labels, search codes). Peak resident memory: VmHWM of that process.
3. **Predictor alone** in another fresh process (``--child predictor``): the same chips,
   cut by the same ``imagery.rasters`` code beforehand (not timed), then only
   ``Predictor.predict`` in chunks of ``--chunk``.

Prints tiles/s of both, their ratio (target >= 0.7x) and the worker's peak RSS (target
< 2.5 GB, models included). No broker: ``jobs._send`` is a no-op. MB = 10^6 bytes.
Exit status 1 when a target is missed.

``--smoke`` (the test suite's run): a 768 px scene (9 tiles) in chunks of 8; the targets
are not judged (too few tiles to time), but every tile must be predicted: exit status 1
otherwise. Seconds, no figures worth keeping.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGET_RATIO = 0.7
TARGET_PEAK_MB = 2500


def write_scene(path: Path, side: int, seed: int = 0) -> Path:
    """A large synthetic GeoTIFF, written one 256-row strip at a time."""
    import rasterio
    from PIL import Image as PILImage
    from rasterio.transform import from_origin
    from rasterio.windows import Window
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    coarse = rng.random((4, max(2, side // 400), max(2, side // 400)))
    profile = {"driver": "GTiff", "width": side, "height": side, "count": 4,
               "dtype": "uint16", "nodata": 0, "crs": "EPSG:32721",
               "transform": from_origin(300000, 9000000, 3, 3), "tiled": True,
               "blockxsize": 256, "blockysize": 256, "compress": "deflate", "predictor": 2,
               "BIGTIFF": "IF_SAFER"}
    fields = [PILImage.fromarray(band.astype(np.float32)).resize((side, side),
                                                                  PILImage.Resampling.BILINEAR)
              for band in coarse]  # 4 x side^2 float32: 400 MB at 10,000 px, this process only
    with rasterio.open(path, "w", **profile) as ds:
        for y in tqdm(range(0, side, 256), desc="write scene", file=sys.stderr, leave=False):
            h = min(256, side - y)
            strip = np.stack([np.asarray(f.crop((0, y, side, y + h)), np.float32)
                              for f in fields])
            strip = 600 + 2400 * strip + rng.normal(0, 60, strip.shape)
            data = np.clip(strip, 1, 65535).astype(np.uint16)
            if y < side // 10:
                data[:, :, : side // 10] = 0  # nodata corner
            ds.write(data, window=Window(0, y, side, h))
    return path


def child_predictor(scene: Path, chunk: int) -> dict:
    from classifier.predictor import load_predictor
    from imagery import rasters

    predictor = load_predictor("default", batch_size=chunk)
    with rasters.SceneReader(scene) as reader:
        chips = [c.pixels for _row, strip in reader.strips() for c in strip
                 if c.pixels is not None]
    predictor.predict(chips[:8])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(chips), chunk):
        predictor.predict(chips[i:i + chunk])
    seconds = time.perf_counter() - start
    return {"tiles": len(chips), "seconds": seconds}


class PathUpload:
    """What Django hands over for a large upload: a file on disk (TemporaryUploadedFile)."""

    def __new__(cls, path: Path):
        from django.core.files.uploadedfile import UploadedFile

        class _Upload(UploadedFile):
            def temporary_file_path(self) -> str:
                return str(path)

        return _Upload(open(path, "rb"), name=path.name, content_type="image/tiff",
                       size=path.stat().st_size)


def child_e2e(scene: Path, chunk: int, small: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-scene-") as tmp:
        workdir = Path(tmp)
        os.environ.update({
            "DJANGO_SETTINGS_MODULE": "webapp.settings", "VAR_DIR": str(workdir / "var"),
            "MEDIA_ROOT": str(workdir / "media"),
            "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
            "PREDICT_CHUNK_SIZE": str(chunk), "LOG_LEVEL": "WARNING",
        })
        import django

        from webapp.conf import prepare_var_dir

        prepare_var_dir()  # as manage.py does: var/ before Django opens the database
        django.setup()
        from django.contrib.auth.models import User
        from django.core.management import call_command

        from webapp.models import BatchItem, Prediction, Scene
        from webapp.services import jobs, recognition, search
        from webapp.services.batches import do_create_batch as create_batch
        from webapp.services.batches import do_submit_batch as submit_batch
        from webapp.services.ingest import add_files
        from webapp.services.model_registry import active_model

        call_command("migrate", verbosity=0)
        jobs._send = lambda *args: True
        user = User.objects.create_user("bench", password="pw-bench-1")
        recognition.predictor_for(active_model())
        search.retriever()

        def run(path: Path):
            upload = workdir / f"upload-{path.name}"  # storage moves an upload's temp file
            shutil.copyfile(path, upload)
            return upload

        def tag(upload: Path):
            batch = create_batch(user)
            (found,) = add_files(batch, [PathUpload(upload)])
            recognition.process_batch(submit_batch(batch).pk)
            return batch, found

        tag(run(small))  # warm-up: first-call costs are not counted
        copy = run(scene)  # as the upload's temporary file would be there already
        start = time.perf_counter()
        if os.environ.get("BENCH_PROFILE"):  # where the time goes: a cProfile listing
            import cProfile
            import pstats

            profile = cProfile.Profile()
            batch, found = profile.runcall(tag, copy)
            stats = pstats.Stats(profile, stream=sys.stderr)
            stats.sort_stats(os.environ["BENCH_PROFILE"]).print_stats(40)
        else:
            batch, found = tag(copy)
        seconds = time.perf_counter() - start
        scene_row = Scene.objects.get(pk=found.pk)
        items = BatchItem.objects.filter(batch=batch)
        status = {line.split(":")[0]: int(line.split()[1]) for line in
                  Path("/proc/self/status").read_text().splitlines()
                  if line.startswith(("VmHWM", "VmRSS"))}
        return {"tiles": scene_row.tiles, "nodata": scene_row.tiles_nodata,
                "status": scene_row.status, "seconds": seconds,
                "done": items.filter(status="done").count(),
                "failed": items.filter(status="failed").count(),
                "predictions": Prediction.objects.filter(
                    image__scene_tiles__scene=scene_row).distinct().count(),
                "peak_kb": status["VmHWM"], "rss_kb": status["VmRSS"]}


def run_child(kind: str, scene: Path, chunk: int, small: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--scene", str(scene),
                          "--small", str(small), "--chunk", str(chunk)],
                         check=True, stdout=subprocess.PIPE, cwd=ROOT).stdout
    return json.loads(out.decode().strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--keep", help="folder for the generated scene (kept for reruns)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run for the test suite: --side 768 --chunk 8")
    parser.add_argument("--child", choices=("e2e", "predictor"), help=argparse.SUPPRESS)
    parser.add_argument("--scene", help=argparse.SUPPRESS)
    parser.add_argument("--small", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.side, args.chunk = 768, 8
    if args.child:
        fn = {"e2e": lambda: child_e2e(Path(args.scene), args.chunk, Path(args.small)),
              "predictor": lambda: child_predictor(Path(args.scene), args.chunk)}[args.child]
        print(json.dumps(fn()))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-scene-data-") as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        scene = folder / f"scene_{args.side}.tif"
        if not scene.exists():
            write_scene(scene, args.side)
        small = folder / "warmup.tif"
        if not small.exists():
            write_scene(small, 768, seed=1)
        print(f"scene: {args.side}x{args.side} px, 4 bands uint16, "
              f"{scene.stat().st_size / 1e6:.0f} MB on disk; chunk {args.chunk}")
        e2e = run_child("e2e", scene, args.chunk, small)
        alone = run_child("predictor", scene, args.chunk, small)
    e2e_rate = e2e["tiles"] / e2e["seconds"]
    alone_rate = alone["tiles"] / alone["seconds"]
    ratio = e2e_rate / alone_rate
    peak_mb = e2e["peak_kb"] * 1024 / 1e6
    print(f"end to end   : {e2e['tiles']} tiles ({e2e['nodata']} nodata skipped) in "
          f"{e2e['seconds']:.1f} s = {e2e_rate:.2f} tiles/s; done {e2e['done']}, failed "
          f"{e2e['failed']}, predictions {e2e['predictions']}, scene {e2e['status']}")
    print(f"predictor    : {alone['tiles']} tiles in {alone['seconds']:.1f} s = "
          f"{alone_rate:.2f} tiles/s")
    print(f"ratio        : {ratio:.2f}x (target >= {TARGET_RATIO}x) "
          f"{'OK' if ratio >= TARGET_RATIO else 'MISSED'}")
    print(f"worker peak  : {peak_mb:.0f} MB VmHWM (target < {TARGET_PEAK_MB} MB) "
          f"{'OK' if peak_mb < TARGET_PEAK_MB else 'MISSED'}")
    if args.smoke:
        complete = (e2e["failed"] == 0 and e2e["predictions"] == e2e["tiles"] > 0
                    and e2e["status"] == "done" and alone["tiles"] == e2e["tiles"])
        print(f"smoke        : {'every tile predicted' if complete else 'TILES MISSING'} "
              "(targets not judged)")
        return 0 if complete else 1
    return 0 if ratio >= TARGET_RATIO and peak_mb < TARGET_PEAK_MB else 1


if __name__ == "__main__":
    sys.exit(main())
