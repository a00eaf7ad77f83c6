"""The worker path: throughput against the predictor alone, and peak resident memory on a
batch of very large images against a batch of chips; every figure is measured in this run.

    python bench/bench_worker.py [--images DIR|TAR] [--n 256] [--chunk 64] [--repeat 3]
                                 [--chunks 16,64] [--big-n 64] [--big-side 6300]
                                 [--chunk-pixels PIXELS] [--memory-chips 64]
                                 [--no-throughput] [--no-memory] [--smoke]

1. Throughput, images/s: ``recognition.process_batch`` on a submitted batch of ``--n``
   images (one decode each, shrunk while decoding, one forward pass per chunk of
   ``--chunk`` giving the tags and the search descriptors, display and dehazed copies
   saved, predictions, labels and both search codes stored) against the predictor alone
   on the same bytes: ``decode_image`` at full size + ``Predictor.predict`` in chunks of
   the same size, with the worker's own predictor (same model, already loaded). Images:
   the first ``--n`` of a folder or .tar (e.g. ``../shared/data/ucm/images.tar``), else
   synthetic 256x256 textured JPEG chips, all distinct. The model is warmed up on a small
   batch first; uploading is not timed. ``--repeat`` rounds alternate the predictor alone
   and the worker (each round uploads the images again with a JPEG comment or PNG tEXt
   chunk of its own: new files, same pixels); medians are compared. Wall and CPU time
   (this process, all threads) are both shown: on a shared machine the CPU-time ratio is
   the steadier one. Target: worker >= 0.8x the predictor alone.
2. Peak resident memory, each batch in a fresh process (this script with ``--child``):
   idle RSS once the predictor and the search model are loaded and warm, then the peak
   (``ru_maxrss`` and VmHWM) after ``process_batch`` of ``--big-n`` nearly flat PNGs of
   ``--big-side`` px (about 140 KB each, ~40 MP, all distinct: one PNG with a different
   tEXt chunk per copy), and of ``--memory-chips`` chips of 256 px (64), at each chunk
   size of ``--chunks``.
   Target: peak < 2.5 GB (models included) for the big batch at every chunk size (with
   the default pixel budget a chunk of big images stops at 5; ``--chunk-pixels`` raises
   it so that ``--chunk`` applies to them too). These processes run first, while this
   one is small: Linux carries a parent's peak RSS into a child's ru_maxrss across
   fork + exec.

No broker is needed: ``webapp.services.jobs._send`` is replaced by a no-op. Everything
(SQLite database, media, var/) lives in a temporary directory per process. MB = 10^6 bytes.

``--smoke`` (the test suite's run): 4 chips in chunks of 4, one round; memory runs of one
1,200 px PNG and 4 chips; seconds, no figures worth keeping.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterable
from pathlib import Path

from synthetic_chips import synthetic_chips
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The project's modules are imported where they are used: ``classifier`` imports torch
# (about 1 GB resident), and the memory runs are started while this process is small.

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
TARGET_RATIO = 0.8
TARGET_PEAK_MB = 2500


# --- images ------------------------------------------------------------------------------

def source_images(source: Path, n: int) -> list[tuple[str, bytes]]:
    """The first ``n`` image files of a folder (sorted) or a .tar (archive order)."""
    out: list[tuple[str, bytes]] = []
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            if len(out) >= n:
                break
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                out.append((path.name, path.read_bytes()))
        return out
    with tarfile.open(source) as archive:
        for member in archive:
            if len(out) >= n:
                break
            if member.isfile() and Path(member.name).suffix.lower() in IMAGE_SUFFIXES:
                handle = archive.extractfile(member)
                if handle is not None:
                    out.append((Path(member.name).name, handle.read()))
    return out


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def mark(data: bytes, number: int) -> bytes:
    """Other bytes, same pixels (0: the file as it is): a JPEG comment segment after SOI
    or a PNG tEXt chunk after IHDR, so that each round uploads new images."""
    if number == 0:
        return data
    if data[:2] == b"\xff\xd8":
        comment = b"bench round %d" % number
        return data[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + data[2:]
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return png_copy(data, number)
    raise SystemExit("--repeat above 1 needs JPEG or PNG files (each round uploads them "
                     "again with a different comment)")


def write_flat_png(path: Path, side: int) -> int:
    """A nearly flat RGB PNG (one colour, a sparse grid of dots), written row by row so
    no full-size array is ever held; returns its size in bytes."""
    colour, dot = bytes((90, 120, 60)), bytes((200, 200, 200))
    plain = b"\0" + colour * side  # filter type 0 per scanline
    dotted = bytearray(plain)
    for x in range(0, side, 89):
        dotted[1 + 3 * x:4 + 3 * x] = dot
    dotted = bytes(dotted)
    compressor = zlib.compressobj(9)
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n")
        handle.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)))
        pending = b""
        for y in range(side):
            pending += compressor.compress(dotted if y % 97 == 0 else plain)
            if len(pending) >= 1 << 20:
                handle.write(_png_chunk(b"IDAT", pending))
                pending = b""
        pending += compressor.flush()
        handle.write(_png_chunk(b"IDAT", pending))
        handle.write(_png_chunk(b"IEND", b""))
    return path.stat().st_size


def png_copy(base: bytes, number: int) -> bytes:
    """The same PNG with its own tEXt chunk right after IHDR: other bytes, same pixels."""
    assert base[12:16] == b"IHDR", "not a PNG that starts with IHDR"
    end_of_ihdr = 8 + 8 + 13 + 4
    text = _png_chunk(b"tEXt", b"Comment\0bench copy %d" % number)
    return base[:end_of_ihdr] + text + base[end_of_ihdr:]


# --- the web app in process --------------------------------------------------------------

def configure(workdir: Path, chunk: int, chunk_pixels: int = 0):
    """Django on a fresh SQLite database and media folder under ``workdir``; no broker.
    Returns a user to upload as."""
    if chunk_pixels:
        os.environ["PREDICT_CHUNK_PIXELS"] = str(chunk_pixels)
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
        "VAR_DIR": str(workdir / "var"),
        "MEDIA_ROOT": str(workdir / "media"),
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "PREDICT_CHUNK_SIZE": str(chunk),
        # the chip path: big PNGs stay images (as scenes they are bench_scene.py's)
        "SCENE_MIN_SIDE": "1000000",
    })
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    from webapp.conf import prepare_var_dir

    prepare_var_dir()  # as manage.py does: var/ before Django opens the database
    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from webapp.services import jobs

    call_command("migrate", verbosity=0)
    jobs._send = lambda *args: True  # what would go to the broker goes nowhere
    return User.objects.create_user("bench", password="pw-bench-1")


def upload(user, files: Iterable[tuple[str, bytes]], total: int | None = None,
           desc: str = "upload"):
    """A submitted batch of (name, bytes), added one file at a time (as a request would
    stream them: only one file's bytes are held here at a time)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from webapp.services.batches import do_create_batch as create_batch
    from webapp.services.batches import do_submit_batch as submit_batch
    from webapp.services.ingest import add_files

    batch = create_batch(user)
    for name, data in tqdm(files, total=total, desc=desc, file=sys.stderr, leave=False):
        add_files(batch, [SimpleUploadedFile(name, data)])
    return submit_batch(batch)


def outcome(batch) -> dict[str, int]:
    """What the worker left: items by status, predictions, display copies, search codes."""
    from webapp.models import BatchItem, Image, ImageCode, Prediction

    items = BatchItem.objects.filter(batch=batch)
    image_ids = list(items.values_list("image_id", flat=True))
    return {
        "done": items.filter(status=BatchItem.Status.DONE, reused=False).count(),
        "reused": items.filter(reused=True).count(),
        "failed": items.filter(status=BatchItem.Status.FAILED).count(),
        "queued": items.filter(status=BatchItem.Status.QUEUED).count(),
        "predictions": Prediction.objects.filter(image_id__in=image_ids).count(),
        "display": Image.objects.filter(pk__in=image_ids).exclude(display="")
        .exclude(dehazed="").count(),
        "codes": ImageCode.objects.filter(image_id__in=image_ids).count(),
    }


def load_models():
    """The worker's predictor for the active model and the search model, both loaded."""
    from webapp.services import recognition, search
    from webapp.services.model_registry import active_model

    predictor = recognition.predictor_for(active_model())
    search.retriever()
    return predictor


def warm_up(user) -> None:
    """One small batch through the whole worker path (first-call costs are not counted)."""
    from webapp.services import recognition

    batch = upload(user, synthetic_chips(4, seed=10_000), total=4, desc="warm-up")
    recognition.process_batch(batch.pk)


def memory_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in KB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


# --- 1. throughput -----------------------------------------------------------------------

def throughput(args) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        user = configure(Path(tmp), args.chunk, args.chunk_pixels)
        from imagery.decode import decode_image
        from webapp.services import recognition

        predictor = load_models()
        warm_up(user)
        if args.images:
            files = source_images(Path(args.images), args.n)
            origin = f"first {len(files)} images of {args.images}"
        else:
            files = list(synthetic_chips(args.n))
            origin = f"{len(files)} synthetic 256x256 JPEG chips"
        if not files:
            raise SystemExit(f"no images found in {args.images}")

        def predictor_alone(blobs: list[bytes]) -> tuple[float, float]:
            start, cpu = time.perf_counter(), time.process_time()
            for first in range(0, len(blobs), args.chunk):
                predictor.predict([decode_image(b) for b in blobs[first:first + args.chunk]])
            return time.perf_counter() - start, time.process_time() - cpu

        load = os.getloadavg()[0]
        alone, worker, outcomes = [], [], []
        for round_ in range(args.repeat):
            marked = [(name, mark(data, round_)) for name, data in files]
            print(f"[1] round {round_ + 1}/{args.repeat}: predictor alone", file=sys.stderr)
            alone.append(predictor_alone([data for _, data in marked]))
            batch = upload(user, marked, total=len(marked))
            print(f"[1] round {round_ + 1}/{args.repeat}: worker path", file=sys.stderr)
            start, cpu = time.perf_counter(), time.process_time()
            recognition.process_batch(batch.pk)
            worker.append((time.perf_counter() - start, time.process_time() - cpu))
            outcomes.append(outcome(batch))
        load_after = os.getloadavg()[0]

    n = len(files)
    print(f"1. throughput: {origin}, chunks of {args.chunk}, device {predictor.device}, "
          f"torch threads {torch_threads()}, {os.cpu_count()} CPUs, load average "
          f"{load:.2f} at the start, {load_after:.2f} at the end")
    for round_, done in enumerate(outcomes, 1):
        print(f"   worker round {round_}: {done['done']} predicted, {done['reused']} reused, "
              f"{done['failed']} failed, {done['display']} with display copies, "
              f"{done['codes']} with search codes")
    print(f"   {args.repeat} rounds, alternating; medians (wall seconds of each round)")
    print(f"{'':>3}{'path':<36} {'wall s':>7} {'images/s':>9} {'CPU s':>7} {'img/CPU s':>10}"
          f"  rounds (wall s)")
    for name, runs in (("predictor alone (decode + predict)", alone),
                       ("worker path (process_batch)", worker)):
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        rounds = " ".join(f"{w:.2f}" for w, _ in runs)
        print(f"{'':>3}{name:<36} {wall:7.2f} {n / wall:9.1f} {cpu:7.2f} {n / cpu:10.1f}"
              f"  {rounds}")
    wall_ratio = statistics.median(w for w, _ in alone) / statistics.median(w for w, _ in worker)
    cpu_ratio = statistics.median(c for _, c in alone) / statistics.median(c for _, c in worker)
    verdict = "meets" if wall_ratio >= TARGET_RATIO else "MISSES"
    print(f"   ratio worker / predictor alone: {wall_ratio:.2f}x wall time ({verdict} the "
          f"target >= {TARGET_RATIO}x), {cpu_ratio:.2f}x CPU time")
    if any(done["done"] != n for done in outcomes):
        print("   note: not every image was predicted in every round (duplicates are "
              "reused, broken files fail): the worker's images/s are overstated")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


# --- 2. memory ---------------------------------------------------------------------------

def child(args) -> None:
    """One fresh process: load and warm the models, then one batch; JSON on stdout."""
    with tempfile.TemporaryDirectory(prefix="bench-worker-child-") as tmp:
        user = configure(Path(tmp), args.chunk, args.chunk_pixels)
        from webapp.services import batches, recognition

        load_models()
        warm_up(user)
        gc.collect()
        idle = memory_status()
        if args.child == "big":
            base = Path(args.base_png).read_bytes()
            files: Iterable[tuple[str, bytes]] = (
                (f"big{i}.png", png_copy(base, i)) for i in range(args.big_n))
            total = args.big_n
        else:
            files, total = synthetic_chips(args.memory_chips, seed=1), args.memory_chips
        batch = upload(user, files, total=total, desc=f"upload {args.child}")
        loaded = memory_status()

        chunks: list[int] = []
        real_next_chunk, real_decode = batches.next_chunk, recognition.decode_for_pipeline
        bar = tqdm(total=total, desc=f"process {args.child} (chunk {args.chunk})",
                   file=sys.stderr, leave=False)

        def next_chunk(*a, **k):
            items = real_next_chunk(*a, **k)
            if items:
                chunks.append(len(items))
            return items

        def decode_for_pipeline(*a, **k):
            decoded = real_decode(*a, **k)
            bar.update()
            return decoded

        batches.next_chunk, recognition.decode_for_pipeline = next_chunk, decode_for_pipeline
        start = time.perf_counter()
        recognition.process_batch(batch.pk)
        seconds = time.perf_counter() - start
        bar.close()
        peak = memory_status()
        result = {"kind": args.child, "chunk": args.chunk, "idle_rss": idle["VmRSS"],
                  "idle_hwm": idle["VmHWM"], "before_rss": loaded["VmRSS"],
                  "peak_hwm": peak["VmHWM"], "final_rss": peak["VmRSS"],
                  "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "chunks": chunks, "seconds": seconds, "outcome": outcome(batch)}
    print(json.dumps(result))


def run_child(kind: str, chunk: int, args, base_png: Path) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind,
               "--chunk", str(chunk), "--big-n", str(args.big_n), "--base-png", str(base_png),
               "--chunk-pixels", str(args.chunk_pixels), "--memory-chips",
               str(args.memory_chips)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def mb(kb: int) -> float:
    return kb * 1024 / 1e6


def describe_chunks(chunks: list[int]) -> str:
    sizes = sorted(set(chunks), reverse=True)
    return f"{len(chunks)} ({'/'.join(str(s) for s in sizes)} items)"


def memory_runs(args) -> tuple[list[dict], int]:
    """Every memory run, one fresh process each; returns their results and the PNG size.

    Run before this process loads anything big: Linux carries a parent's peak RSS into
    its child's ``ru_maxrss`` across fork + exec (VmHWM is the child's own).
    """
    chunk_sizes = [int(c) for c in (args.chunks or str(args.chunk)).split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-worker-png-") as tmp:
        base_png = Path(tmp) / "flat.png"
        size = write_flat_png(base_png, args.big_side)
        rows = []
        for chunk in chunk_sizes:
            for kind in ("big", "chip"):
                print(f"[2] {kind} batch, chunk {chunk}: fresh process", file=sys.stderr)
                rows.append(run_child(kind, chunk, args, base_png))
    return rows, size


def report_memory(args, rows: list[dict], size: int) -> None:
    megapixels = args.big_side ** 2 / 1e6
    budget = (f"{args.chunk_pixels / 1e6:,.0f} MP" if args.chunk_pixels
              else "PREDICT_CHUNK_PIXELS as configured (200 MP by default)")
    print(f"\n2. peak resident memory, one fresh process per batch (idle = models loaded and "
          f"warm); big: {args.big_n} PNGs of {args.big_side}x{args.big_side} px "
          f"({megapixels:.1f} MP, {size / 1e3:.0f} KB each, all distinct); chip: "
          f"{args.memory_chips} JPEGs of 256x256 px; chunk pixel budget "
          f"{budget}; MB = 10^6 bytes; idle HWM = VmHWM while loading and warming up; "
          f"peak RSS = ru_maxrss after the batch")
    print(f"{'':>3}{'chunk':>5} {'batch':<6} {'idle RSS':>9} {'idle HWM':>9} {'peak RSS':>9} "
          f"{'VmHWM':>9} "
          f"{'+ idle':>8} {'seconds':>8}  {'chunks run':<16} outcome")
    by = {(row["chunk"], row["kind"]): row for row in rows}
    for row in rows:
        out = row["outcome"]
        print(f"{'':>3}{row['chunk']:>5} {row['kind']:<6} {mb(row['idle_rss']):9.0f} "
              f"{mb(row['idle_hwm']):9.0f} {mb(row['maxrss']):9.0f} {mb(row['peak_hwm']):9.0f} "
              f"{mb(row['maxrss'] - row['idle_rss']):8.0f} {row['seconds']:8.1f}  "
              f"{describe_chunks(row['chunks']):<16} {out['done']} done, {out['failed']} "
              f"failed, {out['codes']} codes")
    worst = 0.0
    for chunk in sorted({row["chunk"] for row in rows}):
        big, chip = by[(chunk, "big")], by[(chunk, "chip")]
        worst = max(worst, mb(max(big["maxrss"], big["peak_hwm"])))
        grow_big, grow_chip = big["maxrss"] - big["idle_rss"], chip["maxrss"] - chip["idle_rss"]
        grow = f"{grow_big / grow_chip:.2f}x" if grow_chip > 0 else "n/a"
        print(f"   chunk {chunk}: big / chip peak {big['maxrss'] / chip['maxrss']:.2f}x, "
              f"increase over idle {grow}")
    verdict = "meets" if worst < TARGET_PEAK_MB else "MISSES"
    print(f"   target: peak < {TARGET_PEAK_MB / 1000:.1f} GB (models included) for the big "
          f"batch at every chunk size: worst {worst:.0f} MB ({verdict} it)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", help="folder or .tar of images (default: synthetic chips)")
    parser.add_argument("--n", type=int, default=256, help="images in the throughput run")
    parser.add_argument("--chunk", type=int, default=64, help="worker chunk size "
                        "(PREDICT_CHUNK_SIZE) and forward batch of the predictor alone")
    parser.add_argument("--repeat", type=int, default=3,
                        help="throughput rounds, predictor alone and worker alternating")
    parser.add_argument("--chunks", default="",
                        help="chunk sizes of the memory runs, e.g. 16,64 (default: --chunk)")
    parser.add_argument("--big-n", type=int, default=64, help="large PNGs in the memory run")
    parser.add_argument("--big-side", type=int, default=6300, help="their side in pixels")
    parser.add_argument("--chunk-pixels", type=int, default=0,
                        help="PREDICT_CHUNK_PIXELS (default: the settings' own, 200 MP: "
                             "chunks of 5 big images whatever --chunk)")
    parser.add_argument("--memory-chips", type=int, default=64,
                        help="256 px chips in the memory run's chip batch")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--child", choices=("big", "chip"), help=argparse.SUPPRESS)
    parser.add_argument("--base-png", help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite: "
                        "--n 4 --chunk 4 --repeat 1 --big-n 1 --big-side 1200 --memory-chips 4")
    args = parser.parse_args()
    if args.smoke:
        args.n, args.chunk, args.repeat, args.chunks = 4, 4, 1, ""
        args.big_n, args.big_side, args.memory_chips = 1, 1200, 4
    if args.child:
        child(args)
        return
    runs = None if args.no_memory else memory_runs(args)  # first: see memory_runs
    if not args.no_throughput:
        throughput(args)
    if runs is not None:
        report_memory(args, *runs)


if __name__ == "__main__":
    main()
