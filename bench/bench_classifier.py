"""Classifier speed benchmark: every figure is a ratio against a baseline timed in the
same run, on the same machine.

1. Dehazing, ms per 256x256 image: ``classifier.dehaze`` against the straightforward
   float64 reference (``bench/reference_dehaze.py``), plus how far their outputs differ.
2. Full pipeline, images per second from JPEG bytes (decode, resize, dehaze where
   needed, 8-view TTA through the needed networks, ridge layer, thresholds) against the
   bare network forward pass at the same input size and batch size; and the effect of
   channels_last and bfloat16 autocast on the forward pass (with the score difference
   bf16 causes, to judge whether accuracy holds).
3. With ``--baseline``: the same full pipeline of another model (the previous default,
   say), timed in this run on the same images, and the ratio of the two.

    python bench/bench_classifier.py [--images DIR|TAR] [--model default] [--n 512]
        [--baseline MODEL_DIR | --baseline git:REV] [--smoke]

``git:REV`` takes ``classifier/default_model`` as it was at commit REV (extracted with
``git archive`` into a temporary folder), e.g. the default before the current one.
``--smoke`` (the test suite's run): 8 images, 2 for dehazing, batch 8, one repeat;
seconds, no figures worth keeping.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_dehaze import dehaze_reference  # noqa: E402

from classifier.dehaze import DehazeParams, dehaze  # noqa: E402
from classifier.inference import autocast, to_tensor  # noqa: E402
from classifier.predictor import Predictor  # noqa: E402
from classifier.tta import tta_views  # noqa: E402
from imagery.datasets import iter_image_bytes, read_labels  # noqa: E402
from imagery.decode import decode_image  # noqa: E402


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Best-of-``repeat`` wall time in seconds (the least disturbed run)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def synthetic_jpegs(count: int, size: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    blobs = []
    for _ in range(count):
        base = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((size, size), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        blobs.append(buf.getvalue())
    return blobs


def load_jpegs(source: str | None, labels: str | None, count: int) -> tuple[list[bytes], str]:
    if source is None:
        return synthetic_jpegs(count, 256), "synthetic 256x256 JPEGs"
    wanted = set(read_labels(labels).names[:count]) if labels else None
    blobs = []
    path = Path(source)
    if wanted is None:
        names = sorted(p.stem for p in path.iterdir()) if path.is_dir() else None
        wanted = set(names[:count]) if names else None
    if wanted is None:
        import tarfile
        with tarfile.open(path) as archive:
            wanted = {Path(m.name).stem for m in archive.getmembers() if m.isfile()}
            wanted = set(sorted(wanted)[:count])
    for _, blob in iter_image_bytes(path, wanted):
        blobs.append(blob)
    return blobs[:count], f"{len(blobs[:count])} images from {source}"


def bench_dehaze(images: list[np.ndarray], repeat: int) -> None:
    params = DehazeParams()
    window, radius = params.scaled(256, 256)
    ref = timed(lambda: [dehaze_reference(im, window, radius) for im in images], repeat)
    ours = timed(lambda: [dehaze(im, params) for im in images], repeat)
    diff = np.mean([np.abs(dehaze(im).astype(int) - dehaze_reference(im, window, radius))
                    .mean() for im in images])
    n = len(images)
    print("\n## Dehazing, 256x256 RGB")
    print(f"reference (float64, per-step numpy): {ref / n * 1e3:8.2f} ms/image")
    print(f"classifier.dehaze (float32, fused):  {ours / n * 1e3:8.2f} ms/image")
    print(f"speed-up: {ref / ours:.2f}x   mean |difference| {diff:.3f} grey levels of 255")


def bench_pipeline(predictor: Predictor, blobs: list[bytes], batch: int, repeat: int) -> None:
    size = predictor.image_size
    network = predictor.networks["original"][0]
    prepared = predictor.prepare([decode_image(b) for b in blobs[:batch]])
    x = to_tensor(prepared, predictor.device)
    x_plain = x.contiguous()

    def forward(tensor: torch.Tensor, model: torch.nn.Module, amp: bool) -> None:
        with torch.inference_mode(), autocast(predictor.device, amp):
            model(tensor)

    plain_model = type(network)(network.config)
    plain_model.load_state_dict(network.state_dict())
    plain_model.eval()
    t_bare = timed(lambda: forward(x_plain, plain_model, False), repeat)
    t_cl = timed(lambda: forward(x, network, False), repeat)
    t_bf16 = timed(lambda: forward(x, network, True), repeat)
    with torch.inference_mode():
        p32 = torch.sigmoid(network(tta_views(x, 8)).float())
        with autocast(predictor.device, True):
            p16 = torch.sigmoid(network(tta_views(x, 8)).float())
    bf16_diff = float((p32 - p16).abs().max())

    t_full = full_pipeline_seconds(predictor, blobs, repeat)
    n = len(blobs)
    bare_ips = batch / t_bare
    print(f"\n## Pipeline (input {size}px, batch {batch}, {torch.get_num_threads()} threads, "
          f"{predictor.device})")
    print(f"bare network forward (NCHW fp32):       {bare_ips:9.0f} img/s  (baseline)")
    print(f"forward, channels_last fp32:            {batch / t_cl:9.0f} img/s  "
          f"{t_bare / t_cl:.2f}x")
    print(f"forward, channels_last bf16 autocast:   {batch / t_bf16:9.0f} img/s  "
          f"{t_bare / t_bf16:.2f}x  (max |p diff| over TTA views {bf16_diff:.4f})")
    post = predictor.postprocessor
    networks = sum(len(predictor.networks[kind]) for kind, use in
                   (("original", post.needs_original), ("dehazed", post.needs_dehazed)) if use)
    print(f"full pipeline from JPEG bytes:          {n / t_full:9.0f} img/s  "
          f"{(n / t_full) / bare_ips:.3f}x of bare "
          f"({predictor.tta_views} TTA views x {networks} networks = "
          f"{predictor.tta_views * networks} forward passes per image, plus decode/dehaze)")


def full_pipeline_seconds(predictor: Predictor, blobs: list[bytes], repeat: int) -> float:
    """Best wall time of decoding ``blobs`` and predicting them (``Predictor.predict``)."""
    return timed(lambda: predictor.predict([decode_image(b) for b in blobs]), max(1, repeat // 2))


def baseline_model(spec: str, workdir: Path) -> Path:
    """A model directory, or ``git:REV``: the shipped default as it was at commit REV."""
    if not spec.startswith("git:"):
        return Path(spec)
    root = Path(__file__).resolve().parent.parent
    blob = subprocess.run(["git", "-C", str(root), "archive", spec[4:],
                           "classifier/default_model"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as archive:
        archive.extractall(workdir, filter="data")
    return workdir / "classifier" / "default_model"


def bench_against(predictor: Predictor, baseline: Predictor, blobs: list[bytes],
                  repeat: int) -> None:
    """The two models' full pipelines on the same images, alternately, in this run."""
    ours = full_pipeline_seconds(predictor, blobs, repeat)
    theirs = full_pipeline_seconds(baseline, blobs, repeat)
    n = len(blobs)

    def networks(p: Predictor) -> str:
        return ", ".join(f"{kind}: {len(nets)} x {'/'.join(sorted({n.config.arch for n in nets}))}"
                         for kind, nets in p.networks.items())

    print(f"\n## Against the baseline model ({n} images, {predictor.tta_views} TTA views)")
    print(f"baseline {baseline.version} ({networks(baseline)}): {n / theirs:7.1f} img/s")
    print(f"model    {predictor.version} ({networks(predictor)}): {n / ours:7.1f} img/s  "
          f"{theirs / ours:.2f}x of the baseline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=None, help="folder or tar of JPEGs (default: "
                        "synthetic 256 px JPEGs)")
    parser.add_argument("--labels", default=None, help="CSV naming which images to use")
    parser.add_argument("--model", default="default")
    parser.add_argument("--n", type=int, default=512, help="images for the pipeline run")
    parser.add_argument("--dehaze-n", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", default=None, metavar="MODEL_DIR|git:REV",
                        help="also time this model's full pipeline and print the ratio")
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite: "
                        "--n 8 --dehaze-n 2 --batch 8 --repeat 1")
    args = parser.parse_args()
    if args.smoke:
        args.n, args.dehaze_n, args.batch, args.repeat = 8, 2, 8, 1
    blobs, what = load_jpegs(args.images, args.labels, args.n)
    print(f"# classifier benchmark: {what}; torch {torch.__version__}")
    dehaze_inputs = [np.asarray(Image.fromarray(decode_image(b)).resize((256, 256)))
                     for b in blobs[:args.dehaze_n]]
    bench_dehaze(dehaze_inputs, args.repeat)
    predictor = Predictor(args.model, batch_size=args.batch)
    bench_pipeline(predictor, blobs, args.batch, args.repeat)
    if args.baseline:
        with tempfile.TemporaryDirectory() as workdir:
            baseline = Predictor(baseline_model(args.baseline, Path(workdir)),
                                 batch_size=args.batch)
            bench_against(predictor, baseline, blobs, args.repeat)


if __name__ == "__main__":
    main()
