"""Every benchmark in bench/ runs end to end at a tiny size (``--smoke``), so that a change
that breaks one breaks the suite. Each runs as an operator would start it: a process of its
own from the repository root, with a clean environment (none of this test session's
Django settings, database or PUBLIC_READS), one thread per library."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 600  # seconds per benchmark: a busy 2-core machine; most take well under a minute
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/webapp")
CLEARED = ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "PUBLIC_READS", "VAR_DIR", "MEDIA_ROOT",
           "PREDICT_CHUNK_SIZE", "PREDICT_CHUNK_PIXELS", "BENCH_PROFILE")
GALLERY_LINES = [r"logged in; every answer 200 with a page",
                 *(rf"^{re.escape(name)}\s+[\d.]+\s+[\d.]+\s+[\d.]+x$" for name in (
                     "gallery, no filter", "gallery, page 500", "gallery, tags any water,road",
                     "gallery, tags all water,road,habitation", "gallery, rare tag blow_down",
                     "gallery, unreviewed, confidence>=0.5",
                     "api images, tags all clear,primary"))]

SCALE_SIZES = (200, 400)  # bench_scale.py --smoke: the baseline, then the grown collection
SCALE_BOTH = (
    "gallery, no filter", "gallery, one tag", "gallery, three tags any",
    "gallery, three tags all", "gallery, rare tag blow_down",
    "gallery, unreviewed + min confidence", "gallery, one batch", "gallery, deep page numbers",
    "gallery, next links from a deep page", "api images, no filter", "api images, one tag",
    "api images, three tags any", "api images, three tags all",
    "api images, rare tag blow_down", "api images, unreviewed + min confidence",
    "api images, one batch", "api images, deep page numbers",
    "api images, next links from a deep page", "api images, one tag, deep page numbers",
    "api images, one tag, next links from a deep page", "gallery, text search + tag",
    "gallery, similar + tag", "api search, text", "api search, image file", "api similar",
    "api labels with counts", "batch page, 2,000 files", "api batch, 2,000 files",
    "api batch, later item pages", "scene page, 1,600 tiles", "scene tiles.geojson",
    "gallery, reviewed + tag", "api images, reviewed + tag", "api review queue, label filter")
SCALE_CURATOR = ("admin images", "admin images, label filter", "admin review queue",
                 "admin labels with counts", "api review queue", "admin images, name search",
                 "admin images, id search", "admin predictions")
SCALE_TIMED = [(name, user) for name in SCALE_BOTH for user in ("owner-all", "owner-plain")] \
    + [(name, "owner-all") for name in SCALE_CURATOR]
SCALE_LINES = [
    *(rf'^\{{"name": "seed", "n_images": {n}, "added": 200, "seconds": [\d.]+'
      for n in SCALE_SIZES),
    *(rf'^\{{"name": "{re.escape(name)}", "user": "{user}", "n_images": {n}, "requests": 3, '
      r'"p50_ms": [\d.]+, "p95_ms": [\d.]+, "max_ms": [\d.]+\}$'
      for name, user in SCALE_TIMED for n in SCALE_SIZES),
    *(rf'^\{{"name": "{re.escape(name)}", "user": "{user}", "n_images": 400, "baseline": 200, '
      r'"ratio_p50": [\d.]+, "ratio_p95": [\d.]+\}$' for name, user in SCALE_TIMED),
    *(rf'^\{{"name": "export_labels", "n_images": {n}, "seconds": [\d.]+, "peak_mb": [\d.]+\}}$'
      for n in SCALE_SIZES),
    *(rf'^\{{"name": "search cold start", "query": "{query}", "preload": {preload}, '
      rf'"n_images": {n}, "server_up_seconds": [\d.]+, "seconds": [\d.]+, "rss_mb": [\d.]+'
      for query in ("text", "image") for preload in ("true", "false") for n in SCALE_SIZES),
    *(rf'^\{{"name": "web processes", "n_images": {n}, "workers": 2, '
      r'"worker_uss_mb_max": [\d.]+' for n in SCALE_SIZES),
]


def classifier_baseline() -> list[str]:
    """--baseline at the checked-out commit (git:REV), or the model folder without git."""
    return ["--baseline", "git:HEAD" if (ROOT / ".git").exists() else "classifier/default_model"]


# (test id, script, extra arguments, extra environment, lines the output must contain: regexes)
CASES = [
    ("classifier", "bench_classifier.py", classifier_baseline(), {}, [
        r"^## Dehazing", r"^speed-up: [\d.]+x", r"^full pipeline from JPEG bytes: +[\d.]+ img/s",
        r"^## Against the baseline model \(8 images", r"[\d.]+x of the baseline$"]),
    ("gallery-sqlite", "bench_gallery.py", [], {}, [r"^database: sqlite;", *GALLERY_LINES]),
    ("gallery-postgresql", "bench_gallery.py", [], {"DATABASE_URL": POSTGRES_URL},
     [r"^database: postgresql;", *GALLERY_LINES]),
    ("scale-postgresql", "bench_scale.py", [], {"DATABASE_URL": POSTGRES_URL}, SCALE_LINES),
    ("search", "bench_search.py", [], {}, [
        r"^\s+2,000\s+[\d.]+\s+[\d.]+\s+[\d.]+x$", r"^encoding with default",
        r"^  text query:", r"^  image query:", r"^live index: 5,000 64-bit codes",
        r"^  during ingestion", r"^  at compaction thresholds", r"^  bulk load"]),
    ("worker", "bench_worker.py", [], {}, [
        r"worker round 1: 4 predicted, 0 reused, 0 failed, 4 with display copies, 4 with "
        r"search codes", r"ratio worker / predictor alone: [\d.]+x",
        r"^\s+4 big .* 1 done, 0 failed, 1 codes$", r"^\s+4 chip .* 4 done, 0 failed, 4 codes$"]),
    ("scene", "bench_scene.py", [], {}, [
        r"^end to end   : 9 tiles .* failed 0, predictions 9, scene done$",
        r"^predictor    : 9 tiles", r"^smoke        : every tile predicted"]),
    ("wide-scene", "bench_wide_scene.py", [], {}, [
        r"^blocks   : 20 tiles, peak RSS", r"^baseline : 20 tiles, peak RSS",
        r"^ratio blocks / baseline .*: [\d.]+x"]),
    ("training", "bench_training.py", [], {}, [
        rf"^{re.escape(name)}\s+\d+ ms/step" for name in (
            "default: all cores, channels_last, fp32", "plain NCHW memory", "bfloat16 autocast",
            "one thread", "two one-thread processes at once")]),
    ("faults", "bench_faults.py", [], {}, [
        r"^faults struck while batches were unfinished\s+yes\s+yes$",
        r"^items unfinished at the end\s+0\s+yes$",
        r"^Prediction rows == distinct images\s+8 / 8\s+yes$",
        r"^batches read back by their owners \(200, done\)\s+2/2\s+yes$"]),
]


def environment(extra: dict[str, str]) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in CLEARED}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


@pytest.mark.parametrize(("script", "args", "env", "expected"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_benchmark_runs_end_to_end(script, args, env, expected):
    command = [sys.executable, f"bench/{script}", "--smoke", *args]
    done = subprocess.run(command, cwd=ROOT, env=environment(env), capture_output=True,
                          text=True, timeout=TIMEOUT)
    shown = f"$ {' '.join(command)}\nstdout:\n{done.stdout[-6000:]}\nstderr:\n{done.stderr[-4000:]}"
    assert done.returncode == 0, shown
    missing = [line for line in expected if not re.search(line, done.stdout, re.M)]
    assert not missing, f"missing in the output: {missing}\n{shown}"


def test_every_benchmark_has_a_smoke_run():
    scripts = {path.name for path in (ROOT / "bench").glob("bench_*.py")}
    assert scripts == {case[1] for case in CASES}


def test_make_bench_runs_every_speed_benchmark():
    """bench_faults.py (the fault scenario, minutes) runs on its own; the rest in make bench."""
    recipe = re.search(r"^bench:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert recipe, "no bench target in the Makefile"
    listed = set(re.findall(r"bench/(bench_\w+\.py)", recipe.group(1)))
    scripts = {path.name for path in (ROOT / "bench").glob("bench_*.py")}
    assert listed == scripts - {"bench_faults.py"}


def test_scale_requests_times_paths_on_a_database_bench_scale_kept(tmp_path):
    """bench/scale_requests.py, the reviewers' tool: on what bench_scale.py --seed-only
    kept, each path answers 200 for each user (admin pages for owner-all only)."""
    import psycopg

    seeded = subprocess.run(
        [sys.executable, "bench/bench_scale.py", "--smoke", "--seed-only"], cwd=ROOT,
        env=environment({"DATABASE_URL": POSTGRES_URL}), capture_output=True, text=True,
        timeout=TIMEOUT)
    try:
        assert seeded.returncode == 0, seeded.stderr[-4000:]
        output = tmp_path / "scale.jsonl"
        output.write_text(seeded.stdout)
        assert '"name": "kept"' in seeded.stdout and '"p95_ms"' not in seeded.stdout
        paths = ["/api/images/?tags=water&reviewed=true", "/gallery/?tags=water",
                 "/admin/webapp/prediction/", "/api/images/?batch={batch}"]
        done = subprocess.run(
            [sys.executable, "bench/scale_requests.py", str(output), *paths, "--requests", "1",
             "--workers", "1"], cwd=ROOT, env=environment({}), capture_output=True, text=True,
            timeout=TIMEOUT)
        assert done.returncode == 0, done.stderr[-4000:]
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        assert [(r["path"].split("?")[0], r["user"], r["status"]) for r in lines] == [
            ("/api/images/", "owner-all", 200), ("/api/images/", "owner-plain", 200),
            ("/gallery/", "owner-all", 200), ("/gallery/", "owner-plain", 200),
            ("/admin/webapp/prediction/", "owner-all", 200),
            ("/api/images/", "owner-all", 200), ("/api/images/", "owner-plain", 200)]
        assert "{batch}" not in lines[-1]["path"] and all(r["p95_ms"] > 0 for r in lines)
    finally:
        with psycopg.connect(POSTGRES_URL.rsplit("/", 1)[0] + "/postgres",
                             autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS bench_scale_smoke WITH (FORCE)")
