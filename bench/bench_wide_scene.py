"""A wide, thin scene: the memory of cutting it into tiles follows the tile size, not the
scene's width.

    python bench/bench_wide_scene.py [--width 160000] [--rows 512] [--keep DIR] [--smoke]

A ``--width`` x ``--rows`` px, 4-band uint16 GeoTIFF (tiled 256 px, deflate; a ramp with
a little noise) is written block by block. Each fresh child process then reads
every tile row with ``imagery.rasters.SceneReader.strips`` (stretch, masks, chips of
256 px), as the worker does, and reports its peak resident memory (VmHWM) above what it
held once the scene was open:

- **blocks** - today's reader: a tile row is read READ_BLOCK_WIDTH (4,096) px at a time;
- **baseline** - the same code with READ_BLOCK_WIDTH as wide as the scene (the reader
  before issue 20: a tile row read at the scene's full width).

The chips of one tile row are held either way (the worker commits a row at once): that
part grows with the width and is capped in the web app by MAX_SCENE_SIDE. Prints both
peaks and their ratio (target: blocks <= 0.5x the baseline at the default width).
``--smoke``: 5,000 x 256 px, no target judged.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGET_RATIO = 0.5


def write_scene(path: Path, width: int, rows: int) -> Path:
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    profile = {"driver": "GTiff", "width": width, "height": rows, "count": 4,
               "dtype": "uint16", "nodata": 0, "crs": "EPSG:32633",
               "transform": from_origin(500000, 0, 3, 3), "tiled": True,
               "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", **profile) as ds:
        for left in range(0, width, 8192):
            w = min(8192, width - left)
            ramp = np.linspace(500, 3000, w, dtype=np.float32)[None, None, :]
            data = (ramp + rng.integers(0, 8, (4, rows, w))).astype(np.uint16)
            ds.write(data, window=Window(left, 0, w, rows))
    return path


def _vm(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    return 0


def child(scene: Path, block_width: int) -> dict:
    from imagery import rasters

    rasters.READ_BLOCK_WIDTH = block_width
    tiles = 0
    with rasters.SceneReader(scene) as reader:
        reader.use_limits(reader.limits)  # the stretch (one decimated read), as a worker
        opened = _vm("VmRSS")
        for _row, chips in reader.strips():
            tiles += sum(chip.pixels is not None for chip in chips)
    return {"tiles": tiles, "opened": opened, "peak": _vm("VmHWM")}


def run_child(scene: Path, block_width: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(scene), "--block",
                          str(block_width)], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=160_000)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--keep", help="folder for the generated scene (kept for reruns)")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--block", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child), args.block)))
        return 0
    width, rows = (5000, 256) if args.smoke else (args.width, args.rows)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench-wide-"))
    folder.mkdir(parents=True, exist_ok=True)
    scene = folder / f"wide_{width}x{rows}.tif"
    try:
        if not scene.exists():
            write_scene(scene, width, rows)
        from imagery import rasters

        print(f"scene: {width:,} x {rows:,} px, 4 bands uint16, "
              f"{scene.stat().st_size / 1e6:.2f} MB on disk (MB = 10^6 bytes)")
        blocks = run_child(scene, rasters.READ_BLOCK_WIDTH)
        baseline = run_child(scene, width)
        mb = lambda n: n / 1e6  # noqa: E731
        for name, found in (("blocks", blocks), ("baseline", baseline)):
            print(f"{name:9s}: {found['tiles']:,} tiles, peak RSS {mb(found['peak']):7.1f} MB, "
                  f"{mb(found['peak'] - found['opened']):7.1f} MB above the open scene")
        ratio = (blocks["peak"] - blocks["opened"]) / max(1, baseline["peak"] - baseline["opened"])
        print(f"ratio blocks / baseline (memory above the open scene): {ratio:.2f}x "
              f"(target <= {TARGET_RATIO}x)")
        if blocks["tiles"] != baseline["tiles"]:
            print("the two readers cut different tiles")
            return 1
        return 0 if args.smoke or ratio <= TARGET_RATIO else 1
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
