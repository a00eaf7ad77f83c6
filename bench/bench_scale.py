"""The web app at scale (issue 24): real HTTP requests against 1,000,000 images, and the
same requests against 10,000 in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/webapp \\
        python bench/bench_scale.py [--images 1000000] [--baseline 10000] [--requests 30]
                                    [--workers 4] [--keep] [--seed-only] [--smoke]

1. Database: DATABASE_URL's PostgreSQL server gets a database ``bench_scale`` (dropped
   first if it exists, and at the end unless ``--keep``), migrated like any installation;
   the shipped model is registered (``active_model()``) and 50 owners are created:
   ``owner-all`` (``view_all_batches``, staff, in ``curators``), ``owner-plain`` (a plain
   owner: it owns the 2,000-file batch and the first scene) and 48 others, plus two
   curators who did the reviews. Each login user has a password and an API token.
2. Seeding (psycopg COPY, generated with numpy, in transactions of 50,000 images): every
   image is a Planet chip of the search model's own database (``retrieval``'s 29,144
   training chips): its tags (so the label frequencies are Planet's, FREQUENCIES below,
   and their co-occurrence too) and its real search codes (image code with ~2 of 64 bits
   flipped, text code as stored), so that text, image and "similar" search answer as on
   a real collection. Each image: status ready, a JPEG name and storage paths (no files:
   no timed request opens one), uploaded by its batch's owner, created over time (the
   whole collection spans about two years), confidence, novelty (a few % unusual), split
   by content hash (15% evaluation), one Prediction of the active model with its
   probabilities, its model labels (ImageLabel, source model), ``label_ids`` when that
   column exists, an ImageCode of the search model's version and code length, and one
   BatchItem. 2% are reviewed by a curator (some labels dropped, person labels added).
   Batches of 20-2,000 files (log-uniform) belong to owners drawn with Zipf-like weights;
   a few items failed. Scenes of 1,600 tiles (40 x 40, 10,000 px, EPSG:4326) are done,
   their tiles scene-only images (edge tiles partial) with SceneTile rows. Ids are set
   here and the sequences moved past them; then VACUUM ANALYZE. The first
   ``--baseline`` images (the 2,000-file batch and the first scene among them) are
   seeded first; the rest grows the same database to ``--images``.
3. At each size: gunicorn (gunicorn.conf.py, ``--workers`` sync processes, DEBUG off,
   throttles out of the way, a Redis of its own) is started, every worker's search index
   is warmed, and each request kind is sent once to every worker at once (per-process
   first-use costs stay out of the figures), then timed over ``--requests`` requests
   (after ``--warmup`` untimed ones), one at a time, as ``owner-all`` and as
   ``owner-plain`` (pages and the admin through the login form, the API with the user's
   token). Every answer is checked: status 200, a body, the content the request must
   show (images on a gallery page, results in a list, rows in an admin list, every tile
   in the GeoJSON); a wrong answer fails that kind and the run. Deep pages: page numbers
   in the second half of the pages the app numbers (at most ``--max-page-number``), and
   ``next`` links followed on from there.
   Then ``export_labels`` of the whole collection (wall time, peak RSS of the process),
   and the search cold start: a fresh one-worker gunicorn, its first text search (and
   in another fresh one its first image search): seconds until the server answers,
   seconds of the first search, the worker's RSS/USS/PSS and the master's; as shipped
   (the master preloads the search model and index: gunicorn.conf.py, SEARCH_PRELOAD)
   and with SEARCH_PRELOAD=0 (the worker loads them in its first search).

Output (stdout), one JSON line each: ``seed`` per size, every request kind per size
(``{"name", "user", "n_images", "requests", "p50_ms", "p95_ms", "max_ms"}``), ``web
processes`` (memory per size), ``export_labels``, ``search cold start``, then per
request kind the ratio of the two sizes (``{"name", "user", "ratio_p50",
"ratio_p95"}``); with ``--keep`` the database URL, the users' passwords and tokens
(``--seed-only``: seed ``--images``, keep the database, time nothing). Progress goes to
stderr. Exit status 1 when a kind failed or the run was cut short (``--max-minutes``).

``--smoke`` (the test suite's run): 400 images over a baseline of 200, scenes of 16 tiles,
a 40-file batch, 2 workers, 3 requests per kind, database ``bench_scale_smoke``.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import math
import os
import re
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from redis_server import RedisServer, free_port  # noqa: E402
from synthetic_chips import synthetic_chips  # noqa: E402

BIN = Path(sys.executable).parent  # the virtual environment's bin/ (gunicorn lives there)

FREQUENCIES = {  # share of Planet chips carrying each label (train_v2.csv)
    "primary": 0.93, "clear": 0.70, "agriculture": 0.31, "road": 0.20, "water": 0.18,
    "partly_cloudy": 0.18, "cultivation": 0.11, "habitation": 0.09, "haze": 0.07,
    "cloudy": 0.05, "bare_ground": 0.02, "selective_logging": 0.008, "artisinal_mine": 0.008,
    "blooming": 0.008, "slash_burn": 0.005, "conventional_mine": 0.0025, "blow_down": 0.0025,
}
USERS = ("owner-all", "owner-plain")
PASSWORDS = {"owner-all": "pw-bench-scale-all-1", "owner-plain": "pw-bench-scale-plain-1"}
TEXT_QUERIES = ["river", "water", "road", "farmland fields", "clouds", "haze",
                "houses buildings", "bare ground", "forest trees", "agriculture road",
                "cultivation", "river in the rainforest"]
GALLERY_PAGE = 48  # webapp.views.GALLERY_PAGE_SIZE
API_PAGE = 50  # REST_FRAMEWORK PAGE_SIZE
BATCH_ITEMS_PAGE = 500  # webapp.api.serializers.BATCH_ITEMS_PAGE
TILE = 256
SECONDS_PER_IMAGE = 63.0  # a million images over two years of uploads
CHUNK = 50_000  # images per COPY transaction
FAILED_SHARE = 0.002
NOISE_BITS = 0.03  # share of a search code's bits flipped against its Planet chip's code


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


class BenchError(RuntimeError):
    """The bench cannot go on (setup failed, login failed, the time cap passed)."""


# --- database --------------------------------------------------------------------------

def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def recreate_database(admin_url: str, name: str, drop_only: bool = False) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            admin.execute(f'CREATE DATABASE "{name}"')


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    from webapp.conf import prepare_var_dir

    prepare_var_dir()
    django.setup()


@dataclass
class Users:
    ids: dict[str, int]  # username -> id (every owner and curator)
    owners: list[int]  # the 50 owners, owner-all and owner-plain first
    curators: list[int]  # who reviewed: owner-all and two curators
    tokens: dict[str, str]


def create_users(owners: int) -> Users:
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, Permission, User
    from rest_framework.authtoken.models import Token

    curators = Group.objects.get(name="curators")
    view_all = Permission.objects.get(content_type__app_label="webapp",
                                      codename="view_all_batches")
    everyone = User.objects.create_user("owner-all", password=PASSWORDS["owner-all"],
                                        is_staff=True)
    everyone.user_permissions.add(view_all)
    everyone.groups.add(curators)
    plain = User.objects.create_user("owner-plain", password=PASSWORDS["owner-plain"])
    unusable = make_password(None)
    others = User.objects.bulk_create(
        [User(username=f"owner-{i:02d}", password=unusable) for i in range(3, owners + 1)])
    reviewers = User.objects.bulk_create(
        [User(username=f"curator-{c}", password=unusable, is_staff=True) for c in "ab"])
    for reviewer in reviewers:
        reviewer.groups.add(curators)
    tokens = {user.username: Token.objects.create(user=user).key for user in (everyone, plain)}
    ids = {u.username: u.pk for u in [everyone, plain, *others, *reviewers]}
    return Users(ids, [everyone.pk, plain.pk, *(u.pk for u in others)],
                 [everyone.pk, *(u.pk for u in reviewers)], tokens)


# --- the collection's plan ---------------------------------------------------------------

@dataclass
class Unit:
    """One batch: ``files`` chips, or one scene of ``files`` tiles."""

    batch: int
    owner: int
    files: int
    first_image: int  # id of its first image
    start: float  # Unix time of its first upload
    scene: int | None = None  # scene id
    failed: int = 0


@dataclass
class Plan:
    units: list[Unit]
    baseline_units: int  # units[:baseline_units] make the baseline
    big_batch: int
    scene: int  # owner-plain's scene (in the baseline)
    grid: int  # tiles per scene side


def make_plan(args, users: Users, rng: np.random.Generator) -> Plan:
    grid = math.isqrt(args.scene_tiles)
    total, base = args.images, args.baseline
    start = time.time() - 3600 - total * SECONDS_PER_IMAGE
    weights = 1.0 / np.arange(1, len(users.owners) + 1) ** 0.7
    weights /= weights.sum()
    units: list[Unit] = []
    placed = 0

    def add(files: int, owner: int, scene: bool = False) -> None:
        nonlocal placed
        scene_id = sum(u.scene is not None for u in units) + 1 if scene else None
        failed = 0 if scene else int(rng.binomial(files, FAILED_SHARE))
        units.append(Unit(len(units) + 1, owner, files, placed + 1,
                          start + placed * SECONDS_PER_IMAGE, scene_id, failed))
        placed += files

    def batch_size(limit: int) -> int:
        size = int(math.exp(rng.uniform(math.log(20), math.log(args.batch_max + 1))))
        return max(1, min(size, args.batch_max, limit))

    def owner() -> int:
        return int(rng.choice(users.owners, p=weights))

    add(args.big_batch, users.ids["owner-plain"])
    add(grid * grid, users.ids["owner-plain"], scene=True)
    while placed < base:
        add(batch_size(base - placed), owner())
    baseline_units = len(units)
    more_scenes = max(0, args.scenes - 1)
    growth = total - base
    points = [base + growth * (k + 1) / (more_scenes + 1) for k in range(more_scenes)]
    while placed < total:
        if points and placed >= points[0]:
            points.pop(0)
            if total - placed >= grid * grid:
                add(grid * grid, owner(), scene=True)
                continue
        add(batch_size(total - placed), owner())
    return Plan(units, baseline_units, units[0].batch, units[1].scene, grid)


# --- seeding -----------------------------------------------------------------------------

NULL = "\\N"


def text(values) -> list[str]:
    return np.asarray(values).astype(str).tolist()


def floats(values, decimals: int = 4) -> list[str]:
    return np.round(np.asarray(values, dtype=np.float64), decimals).astype(str).tolist()


def stamps(seconds) -> list[str]:
    """Unix times as PostgreSQL timestamps (the COPY session's time zone is UTC)."""
    micro = (np.asarray(seconds, dtype=np.float64) * 1e6).astype(np.int64)
    return np.datetime_as_string(micro.astype("datetime64[us]"), unit="us").tolist()


def bools(values) -> list[str]:
    return np.where(np.asarray(values, dtype=bool), "t", "f").tolist()


def code_ints(signs: np.ndarray) -> np.ndarray:
    """{-1,+1} rows -> the signed 64-bit integers ``retrieval.codes.to_int`` makes."""
    bits = signs.shape[1]
    weights = np.left_shift(np.uint64(1), np.arange(bits - 1, -1, -1, dtype=np.uint64))
    return ((signs > 0).astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)


class Seeder:
    """Writes the plan's rows with COPY, in the real schema (checked against it)."""

    TABLES = {
        "webapp_image": ["id", "sha256", "file", "original_name", "format", "size_bytes",
                         "width", "height", "display", "dehazed", "status", "error",
                         "uploaded_by_id", "created_at", "prediction_id", "confidence",
                         "novelty", "unusual", "reviewed", "reviewed_by_id", "reviewed_at",
                         "scene_only", "coverage", "data_window", "split", "label_ids"],
        "webapp_prediction": ["id", "image_id", "model_id", "probabilities", "tags",
                              "confidence", "novelty", "unusual", "created_at"],
        "webapp_imagelabel": ["id", "image_id", "label_id", "source", "probability",
                              "added_by_id", "added_at", "reviewed"],
        "webapp_imagecode": ["id", "image_id", "model", "bits", "image_code", "text_code",
                             "updated_at"],
        "webapp_batch": ["id", "owner_id", "status", "submitted", "total", "done", "failed",
                         "reused", "created_at", "started_at", "finished_at", "queued_at",
                         "heartbeat_at", "worker"],
        "webapp_batchitem": ["id", "batch_id", "position", "filename", "image_id", "status",
                             "error", "reused", "attempts", "updated_at"],
        "webapp_scene": ["id", "batch_id", "filename", "sha256", "file", "driver",
                         "size_bytes", "width", "height", "bands", "dtype", "rgb_bands",
                         "stretch", "crs_wkt", "epsg", "transform", "bounds", "footprint",
                         "tile_size", "overlap", "edge", "rows", "cols", "rows_tiled",
                         "tiles", "tiles_nodata", "preview", "status", "error", "attempts",
                         "created_at", "tiled_at"],
        "webapp_scenetile": ["id", "scene_id", "row", "col", "x", "y", "width", "height",
                             "coverage", "bounds", "ring", "image_id", "item_id"],
    }
    OPTIONAL = {("webapp_image", "label_ids")}  # the column issue 24 adds

    def __init__(self, url: str, plan: Plan, users: Users, args,
                 rng: np.random.Generator) -> None:
        import psycopg
        from rasterio.crs import CRS

        from webapp.models import Label
        from webapp.services import search
        from webapp.services.model_registry import active_model

        self.plan, self.users, self.args, self.rng = plan, users, args, rng
        self.total_images = args.images
        self.conn = psycopg.connect(url)
        self.conn.execute("SET synchronous_commit = off")
        self.conn.execute("SET TimeZone = 'UTC'")
        self.conn.commit()
        self.schema = self._schema()
        self.columns = {table: self._columns(table, wanted)
                        for table, wanted in self.TABLES.items()}
        model = active_model()
        self.model_id = model.pk
        label_ids = dict(Label.objects.values_list("name", "pk"))
        if not search.available():
            raise BenchError("no retrieval model: search codes cannot be seeded")
        self.code_version, self.bits = search.model_version(), search.code_bits()
        database = search.retriever().database
        names = list(search.retriever().label_names)
        missing = [n for n in names if n not in label_ids]
        if missing:
            raise BenchError(f"labels of the search model's chips not in the vocabulary: "
                             f"{missing}")
        self.tags = database.labels > 0.5  # Planet chips x search-model labels
        self.tag_names = names
        self.tag_label_ids = np.array([label_ids[n] for n in names])
        self.model_labels = list(model.labels)
        self.model_column = {n: self.model_labels.index(n) for n in names
                             if n in self.model_labels}
        self.image_codes = code_ints(database.image_codes[self.bits])
        self.text_codes = code_ints(database.text_codes[self.bits]).view(np.int64)
        self.db_names = list(database.names)
        self.weights = np.left_shift(np.uint64(1),
                                     np.arange(self.bits - 1, -1, -1, dtype=np.uint64))
        # probabilities per chip in 4 variants (each image draws one): the model is sure
        # of the tags it gives and mostly sure of the others
        variants, n_model = 4, len(self.model_labels)
        prob = 0.3 * rng.beta(0.7, 5.0, (len(self.tags), variants, n_model))
        sure = 1.0 - 0.6 * rng.beta(1.0, 3.0, (len(self.tags), variants, n_model))
        for col, name in enumerate(names):
            if name in self.model_column:
                m = self.model_column[name]
                prob[:, :, m] = np.where(self.tags[:, col, None], sure[:, :, m],
                                         prob[:, :, m])
        self.prob = np.round(prob, 4)
        self._json_cache: dict[tuple[int, int], str] = {}
        self._tags_cache: dict[int, str] = {}
        self._ids_cache: dict[int, str] = {}
        label_type = self.schema["webapp_image"].get("label_ids", ("", True, None))[0]
        self.label_ids_array = label_type == "ARRAY"
        self.crs_wkt = CRS.from_epsg(4326).to_wkt()
        self.next_label_row = 1
        self.next_failed_item = self.total_images + 1
        self.next_tile = 1
        self.check_frequencies()

    # schema ---------------------------------------------------------------------------

    def _schema(self) -> dict[str, dict[str, tuple[str, bool, str | None]]]:
        rows = self.conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable = 'YES', column_default, "
            "is_identity = 'YES' FROM information_schema.columns "
            "WHERE table_schema = current_schema()").fetchall()
        schema: dict[str, dict[str, tuple[str, bool, str | None]]] = {}
        for table, column, data_type, nullable, default, identity in rows:
            schema.setdefault(table, {})[column] = (data_type, nullable,
                                                    default or ("identity" if identity
                                                                else None))
        return schema

    def _columns(self, table: str, wanted: list[str]) -> list[str]:
        """The columns to COPY: every NOT NULL column without a default must be among
        them (a new one in the schema needs this bench updated), and each wanted one
        must exist (but for OPTIONAL ones)."""
        existing = self.schema.get(table)
        if not existing:
            raise BenchError(f"table {table} not in the migrated schema")
        unfilled = [c for c, (_, nullable, default) in existing.items()
                    if not nullable and default is None and c not in wanted]
        gone = [c for c in wanted if c not in existing and (table, c) not in self.OPTIONAL]
        if unfilled or gone:
            raise BenchError(f"{table}: the schema changed (NOT NULL columns this bench does "
                             f"not fill: {unfilled}; columns gone: {gone}); update "
                             "bench/bench_scale.py")
        return [c for c in wanted if c in existing]

    def copy(self, cur, table: str, data: dict[str, list[str]]) -> int:
        columns = self.columns[table]
        rows = list(zip(*(data[c] for c in columns)))
        if not rows:
            return 0
        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for start in range(0, len(rows), 20_000):
                copy.write("".join("\t".join(row) + "\n" for row in rows[start:start + 20_000]))
        return len(rows)

    def check_frequencies(self) -> None:
        """The chips' label shares are Planet's (FREQUENCIES, from train_v2.csv)."""
        shares = self.tags.mean(axis=0)
        off = {n: (round(float(s), 4), FREQUENCIES[n]) for n, s in zip(self.tag_names, shares)
               if n in FREQUENCIES and abs(s - FREQUENCIES[n]) > 0.02 + 0.1 * FREQUENCIES[n]}
        if off:
            raise BenchError(f"label shares of the search model's chips differ from Planet's: "
                             f"{off}")

    # rows -----------------------------------------------------------------------------

    def probabilities_json(self, chip: int, variant: int) -> str:
        key = (chip, variant)
        found = self._json_cache.get(key)
        if found is None:
            found = json.dumps(dict(zip(self.model_labels, self.prob[chip, variant].tolist())))
            self._json_cache[key] = found
        return found

    def tags_json(self, chip: int) -> str:
        found = self._tags_cache.get(chip)
        if found is None:
            tagged = {self.tag_names[c] for c in np.flatnonzero(self.tags[chip])}
            found = json.dumps([n for n in self.model_labels if n in tagged])
            self._tags_cache[chip] = found
        return found

    def label_ids_text(self, ids) -> str:
        ids = sorted(int(i) for i in ids)
        return ("{" + ",".join(map(str, ids)) + "}") if self.label_ids_array else json.dumps(ids)

    def seed(self, units: list[Unit]) -> dict[str, int]:
        """Write these units (batches, scenes, their images and everything hanging on
        them); returns the rows written per table."""
        counts: dict[str, int] = {}

        def add(table: str, n: int) -> None:
            counts[table] = counts.get(table, 0) + n

        cur = self.conn.cursor()
        add("webapp_batch", self.copy(cur, "webapp_batch", self.batch_rows(units)))
        add("webapp_scene", self.copy(cur, "webapp_scene", self.scene_rows(units)))
        self.conn.commit()
        layout = self.layout(units)
        n = len(layout["id"])
        for lo in range(0, n, CHUNK):
            part = {key: value[lo:lo + CHUNK] for key, value in layout.items()}
            for table, data in self.image_rows(part).items():
                add(table, self.copy(cur, table, data))
            self.conn.commit()
            say(f"  seeded {min(lo + CHUNK, n):,}/{n:,} images")
        add("webapp_batchitem", self.copy(cur, "webapp_batchitem", self.failed_items(units)))
        add("webapp_scenetile", self.copy(cur, "webapp_scenetile", self.tile_rows(units)))
        self.conn.commit()
        for table in self.TABLES:
            self.conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                              f"(SELECT COALESCE(max(id), 0) + 1 FROM {table}), false)")
        self.conn.commit()
        return counts

    def layout(self, units: list[Unit]) -> dict[str, np.ndarray]:
        """Per image of these units: id, batch, owner, position, time, grid cell."""
        parts: dict[str, list[np.ndarray]] = {k: [] for k in (
            "id", "batch", "owner", "position", "time", "scene", "row", "col")}
        for unit in units:
            pos = np.arange(unit.files)
            parts["id"].append(unit.first_image + pos)
            parts["batch"].append(np.full(unit.files, unit.batch))
            parts["owner"].append(np.full(unit.files, unit.owner))
            parts["position"].append(pos)
            parts["time"].append(unit.start + pos * 0.5)
            parts["scene"].append(np.full(unit.files, unit.scene or 0))
            grid = self.plan.grid
            parts["row"].append(pos // grid if unit.scene else np.full(unit.files, -1))
            parts["col"].append(pos % grid if unit.scene else np.full(unit.files, -1))
        return {k: np.concatenate(v) for k, v in parts.items()}

    def scene_side(self) -> int:
        """Scene width = height: the last tile row and column hold 16 px of data."""
        return (self.plan.grid - 1) * TILE + 16

    def batch_rows(self, units: list[Unit]) -> dict[str, list[str]]:
        start = np.array([u.start for u in units])
        end = np.array([u.start + u.files * 0.5 + 30 for u in units])
        files = np.array([u.files for u in units])
        failed = np.array([u.failed for u in units])
        n = len(units)
        return {
            "id": text([u.batch for u in units]), "owner_id": text([u.owner for u in units]),
            "status": ["done"] * n, "submitted": ["t"] * n, "total": text(files + failed),
            "done": text(files), "failed": text(failed), "reused": ["0"] * n,
            "created_at": stamps(start - 5), "started_at": stamps(start),
            "finished_at": stamps(end), "queued_at": stamps(start), "heartbeat_at": stamps(end),
            "worker": [""] * n,
        }

    def scene_geometry(self, scene: int) -> tuple[float, float, float]:
        """(west, north, degrees per pixel) of a scene: side by side along the equator."""
        pixel = 3e-5  # about 3 m
        return -60.0 + scene * 0.5, -3.0, pixel

    def scene_rows(self, units: list[Unit]) -> dict[str, list[str]]:
        data: dict[str, list[str]] = {c: [] for c in self.TABLES["webapp_scene"]}
        side, grid = self.scene_side(), self.plan.grid
        for unit in units:
            if unit.scene is None:
                continue
            west, north, px = self.scene_geometry(unit.scene)
            east, south = west + side * px, north - side * px
            sha = hashlib.sha256(f"bench-scale-scene-{unit.scene}".encode()).hexdigest()
            ring = [[west, north], [east, north], [east, south], [west, south], [west, north]]
            values = {
                "id": unit.scene, "batch_id": unit.batch, "filename": f"scene_{unit.scene}.tif",
                "sha256": sha, "file": f"originals/{sha[:2]}/{sha[2:4]}/{sha}.tif",
                "driver": "GTiff", "size_bytes": side * side * 8, "width": side,
                "height": side, "bands": 4, "dtype": "uint16",
                "rgb_bands": json.dumps([3, 2, 1]),
                "stretch": json.dumps([[310.0, 2875.0], [402.0, 2310.0], [221.0, 1990.0]]),
                "crs_wkt": self.crs_wkt, "epsg": 4326,
                "transform": json.dumps([px, 0.0, west, 0.0, -px, north]),
                "bounds": json.dumps([west, south, east, north]), "footprint": json.dumps(ring),
                "tile_size": TILE, "overlap": 0, "edge": "pad", "rows": grid, "cols": grid,
                "rows_tiled": grid, "tiles": grid * grid, "tiles_nodata": 0, "preview": "",
                "status": "done", "error": "", "attempts": 0,
                "created_at": stamps([unit.start - 5])[0],
                "tiled_at": stamps([unit.start + unit.files * 0.5])[0],
            }
            for column, value in values.items():
                data[column].append(str(value))
        return data

    def tile_rows(self, units: list[Unit]) -> dict[str, list[str]]:
        data: dict[str, list[str]] = {c: [] for c in self.TABLES["webapp_scenetile"]}
        side, grid = self.scene_side(), self.plan.grid
        for unit in units:
            if unit.scene is None:
                continue
            west, north, px = self.scene_geometry(unit.scene)
            for k in range(unit.files):
                row, col = divmod(k, grid)
                x, y = col * TILE, row * TILE
                w, h = min(TILE, side - x), min(TILE, side - y)
                left, top = west + x * px, north - y * px
                right, bottom = left + w * px, top - h * px
                ring = [[round(left, 7), round(top, 7)], [round(right, 7), round(top, 7)],
                        [round(right, 7), round(bottom, 7)], [round(left, 7), round(bottom, 7)],
                        [round(left, 7), round(top, 7)]]
                image = unit.first_image + k
                values = (self.next_tile, unit.scene, row, col, x, y, w, h,
                          round(w * h / TILE / TILE, 4),
                          json.dumps([round(v, 6) for v in (left, bottom, right, top)]),
                          json.dumps(ring), image, image)  # the item of an image: its id
                for column, value in zip(self.TABLES["webapp_scenetile"], values):
                    data[column].append(str(value))
                self.next_tile += 1
        return data

    def failed_items(self, units: list[Unit]) -> dict[str, list[str]]:
        data: dict[str, list[str]] = {c: [] for c in self.TABLES["webapp_batchitem"]}
        for unit in units:
            for k in range(unit.failed):
                values = (self.next_failed_item, unit.batch, unit.files + k,
                          f"upload_{unit.batch}_{k}.jpg", NULL, "failed",
                          "not an image or GeoTIFF this app reads", "f", "0",
                          stamps([unit.start + unit.files * 0.5])[0])
                for column, value in zip(self.TABLES["webapp_batchitem"], values):
                    data[column].append(str(value))
                self.next_failed_item += 1
        return data

    def image_rows(self, part: dict[str, np.ndarray]) -> dict[str, dict[str, list[str]]]:
        """Images, predictions, labels, codes and batch items of one chunk of images."""
        rng, n = self.rng, len(part["id"])
        ids, t = part["id"], part["time"]
        chips = rng.integers(0, len(self.tags), n)
        self._plant_rare(ids, chips)
        variant = rng.integers(0, 4, n)
        confidence = np.round(rng.beta(2.0, 1.5, n), 4)
        novelty = np.round(np.exp(rng.normal(-0.9, 0.5, n)), 4)
        unusual = novelty > 1.0
        reviewed = rng.random(n) < self.args.reviewed
        reviewer = rng.choice(self.users.curators, n)
        reviewed_at = np.minimum(t + rng.uniform(3600, 30 * 86400, n), time.time() - 60)
        tile = part["scene"] > 0
        side = self.scene_side()
        width = np.where(tile, np.minimum(TILE, side - part["col"] * TILE), TILE)
        height = np.where(tile, np.minimum(TILE, side - part["row"] * TILE), TILE)
        coverage = np.round(width * height / (TILE * TILE), 4)
        shas = [hashlib.sha256(f"bench-scale-{i}".encode()).hexdigest() for i in ids.tolist()]
        split = ["evaluation" if int(s[:15], 16) / float(1 << 60) < 0.15 else "train"
                 for s in shas]
        ext = np.where(tile, "png", "jpg").tolist()
        names = [f"scene_{s}_r{r}_c{c}.png" if s else f"b{b}_{self.db_names[k]}.jpg"
                 for s, r, c, b, k in zip(part["scene"].tolist(), part["row"].tolist(),
                                          part["col"].tolist(), part["batch"].tolist(),
                                          chips.tolist())]
        windows = [f"[0, 0, {w}, {h}]" if cov < 1 else NULL
                   for w, h, cov in zip(width.tolist(), height.tolist(), coverage.tolist())]

        # labels: the chip's tags; a reviewed image lost some and gained person labels
        final = self.tags[chips].copy()
        person: list[tuple[int, int]] = []  # (image index, tag column)
        for k in np.flatnonzero(reviewed):
            have = np.flatnonzero(final[k])
            if len(have) > 1 and rng.random() < 0.3:
                final[k, rng.choice(have)] = False
            if rng.random() < 0.5:
                free = np.flatnonzero(~self.tags[chips[k]])
                if len(free):
                    person.append((int(k), int(rng.choice(free))))
        img_idx, cols = np.nonzero(final)
        extra = {k: [] for k in np.flatnonzero(reviewed).tolist()}
        for k, c in person:
            extra[k].append(c)
        label_ids = []
        for k, chip in enumerate(chips.tolist()):
            if k in extra:
                cols_k = list(np.flatnonzero(final[k])) + extra[k]
                label_ids.append(self.label_ids_text(self.tag_label_ids[cols_k]))
            else:
                found = self._ids_cache.get(chip)
                if found is None:
                    found = self._ids_cache[chip] = self.label_ids_text(
                        self.tag_label_ids[self.tags[chip]])
                label_ids.append(found)
        model_cols = np.array([self.model_column.get(name, -1) for name in self.tag_names])
        probability = np.where(model_cols[cols] >= 0,
                               self.prob[chips[img_idx], variant[img_idx],
                                         np.maximum(model_cols[cols], 0)], np.nan)
        n_model = len(img_idx)
        rows_person = len(person)
        label_id_first = self.next_label_row
        self.next_label_row += n_model + rows_person
        p_idx = np.array([k for k, _ in person], dtype=np.int64)
        p_col = np.array([c for _, c in person], dtype=np.int64)
        labels = {
            "id": text(np.arange(label_id_first, label_id_first + n_model + rows_person)),
            "image_id": text(np.concatenate([ids[img_idx], ids[p_idx]])),
            "label_id": text(np.concatenate([self.tag_label_ids[cols],
                                             self.tag_label_ids[p_col]])),
            "source": ["model"] * n_model + ["person"] * rows_person,
            "probability": [NULL if math.isnan(p) else str(p) for p in probability.tolist()]
            + [NULL] * rows_person,
            "added_by_id": [NULL] * n_model + text(reviewer[p_idx]),
            "added_at": stamps(np.concatenate([t[img_idx] + 2, reviewed_at[p_idx]])),
            "reviewed": bools(np.concatenate([reviewed[img_idx], np.ones(rows_person, bool)])),
        }

        noise = (rng.random((n, self.bits)) < NOISE_BITS).astype(np.uint64)
        codes = self.image_codes[chips] ^ (noise * self.weights).sum(axis=1, dtype=np.uint64)
        created = stamps(t)
        later = stamps(t + 3)
        id_text = text(ids)
        images = {
            "id": id_text, "sha256": shas,
            "file": [f"originals/{s[:2]}/{s[2:4]}/{s}.{e}" for s, e in zip(shas, ext)],
            "original_name": names, "format": np.where(tile, "PNG", "JPEG").tolist(),
            "size_bytes": text(np.where(tile, rng.integers(40_000, 120_000, n),
                                        rng.integers(9_000, 30_000, n))),
            "width": [str(TILE)] * n, "height": [str(TILE)] * n,
            "display": [f"display/{s[:2]}/{s}.jpg" for s in shas],
            "dehazed": [f"dehazed/{s[:2]}/{s}.jpg" for s in shas],
            "status": ["ready"] * n, "error": [""] * n, "uploaded_by_id": text(part["owner"]),
            "created_at": created, "prediction_id": id_text, "confidence": floats(confidence),
            "novelty": floats(novelty), "unusual": bools(unusual), "reviewed": bools(reviewed),
            "reviewed_by_id": np.where(reviewed, text(reviewer), NULL).tolist(),
            "reviewed_at": np.where(reviewed, stamps(reviewed_at), NULL).tolist(),
            "scene_only": bools(tile), "coverage": floats(coverage), "data_window": windows,
            "split": split, "label_ids": label_ids,
        }
        predictions = {
            "id": id_text, "image_id": id_text, "model_id": [str(self.model_id)] * n,
            "probabilities": [self.probabilities_json(c, v)
                              for c, v in zip(chips.tolist(), variant.tolist())],
            "tags": [self.tags_json(c) for c in chips.tolist()],
            "confidence": images["confidence"], "novelty": images["novelty"],
            "unusual": images["unusual"], "created_at": stamps(t + 2),
        }
        codes_rows = {
            "id": id_text, "image_id": id_text, "model": [self.code_version] * n,
            "bits": [str(self.bits)] * n, "image_code": text(codes.view(np.int64)),
            "text_code": text(self.text_codes[chips]), "updated_at": later,
        }
        items = {
            "id": id_text, "batch_id": text(part["batch"]), "position": text(part["position"]),
            "filename": [f"scene_{s}.tif (tile r{r} c{c})" if s else name for s, r, c, name in
                         zip(part["scene"].tolist(), part["row"].tolist(),
                             part["col"].tolist(), names)],
            "image_id": id_text, "status": ["done"] * n, "error": [""] * n,
            "reused": ["f"] * n, "attempts": ["1"] * n, "updated_at": later,
        }
        return {"webapp_image": images, "webapp_prediction": predictions,
                "webapp_imagelabel": labels, "webapp_imagecode": codes_rows,
                "webapp_batchitem": items}

    def _plant_rare(self, ids: np.ndarray, chips: np.ndarray) -> None:
        """The first images of the 2,000-file batch carry the rare tag and the three tags
        the "all" filters ask for, so that every filter finds something at any size."""
        first = self.plan.units[0].first_image
        wanted = [["blow_down"]] * 3 + [["water", "road", "habitation"]] * 3
        for k, names in enumerate(wanted):
            at = np.flatnonzero(ids == first + k)
            if len(at):
                cols = [self.tag_names.index(n) for n in names]
                chips[at[0]] = int(np.flatnonzero(self.tags[:, cols].all(axis=1))[k])

    def vacuum(self) -> None:
        """VACUUM ANALYZE every seeded table until its visibility map covers it (at most
        3 passes): a page is marked all-visible only when no snapshot older than its rows
        is open, and the autovacuum's own ANALYZE of a table just loaded may hold one
        (one pass left a third of the image table unmarked). Index-only scans, the label
        list's and the reviewed images' among them, read the map; an installation's
        autovacuum keeps it, as VACUUM does after a bulk import."""
        self.conn.autocommit = True
        for table in self.TABLES:
            for _ in range(3):
                self.conn.execute(f"VACUUM (ANALYZE) {table}")
                visible, pages = self.conn.execute(
                    "SELECT relallvisible, relpages FROM pg_class WHERE relname = %s",
                    [table]).fetchone()
                if visible >= 0.99 * pages:
                    break
                time.sleep(1)
        self.conn.execute("ANALYZE")
        self.conn.autocommit = False

    def close(self) -> None:
        self.conn.close()


# --- the web server ----------------------------------------------------------------------

class Server:
    """gunicorn in its own process group, its output in a log file."""

    def __init__(self, env: dict[str, str], workers: int, log: Path) -> None:
        import psutil

        self.port, self.workers, self.log_path = free_port(), workers, log
        self.base = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "ab")
        self.process = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"),
             "webapp.wsgi:application", "-w", str(workers),
             "-b", f"127.0.0.1:{self.port}", "--timeout", "300", "--graceful-timeout", "5",
             "--no-control-socket", "--error-logfile", "-", "--access-logfile", "-",
             "--access-logformat", "ACCESS %(m)s %(U)s %(s)s %(L)s"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        self.master = psutil.Process(self.process.pid)
        import requests

        probe = session()
        deadline = time.time() + 180
        while True:
            if self.process.poll() is not None:
                raise BenchError(f"gunicorn exited:\n{self.text()[-3000:]}")
            try:
                if probe.get(self.base + "/healthz", timeout=5).status_code == 200 \
                        and len(self.worker_pids()) == workers:
                    break
            except requests.RequestException:
                pass
            if time.time() > deadline:
                raise BenchError(f"gunicorn not up after 180 s:\n{self.text()[-3000:]}")
            time.sleep(0.3)

    def worker_pids(self) -> list[int]:
        return [child.pid for child in self.master.children()]

    def text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        for signum, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, signum)
            except (ProcessLookupError, PermissionError):
                break
            try:
                self.process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # orphans of a killed master
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


# --- clients -----------------------------------------------------------------------------

def session():
    import requests

    s = requests.Session()
    s.trust_env = False  # 127.0.0.1 only, never through a proxy from the environment
    return s


def login(base: str, username: str, timeout: float):
    """A session logged in through the login form, as a browser does."""
    s = session()
    url = base + "/accounts/login/"
    form = s.get(url, timeout=timeout)
    token = s.cookies.get("csrftoken")
    if form.status_code != 200 or not token:
        raise BenchError(f"login page: {form.status_code}, csrftoken {bool(token)}")
    answer = s.post(url, data={"username": username, "password": PASSWORDS[username],
                               "csrfmiddlewaretoken": token},
                    headers={"Referer": url}, allow_redirects=False, timeout=timeout)
    if answer.status_code != 302 or not s.cookies.get("sessionid"):
        raise BenchError(f"login as {username} failed: {answer.status_code} "
                         f"{answer.headers.get('Location', '')}")
    return s


def token_session(token: str):
    s = session()
    s.headers["Authorization"] = f"Token {token}"
    return s


# --- request kinds -----------------------------------------------------------------------

CARD = re.compile(r'href="/images/(\d+)/"')
NEXT_LINK = re.compile(r'<a href="([^"]+)" rel="next"')
OLD_NEXT_LINK = re.compile(r'<a href="(\?[^"]*page=\d+)">next')


@dataclass
class Context:
    base: str
    n_images: int
    big_batch: int
    big_batch_items: int
    scene: int
    scene_tiles: int
    anchors: list[int]
    chips: list[tuple[str, bytes]]
    pages: dict[tuple[str, str], int]  # (user, list) -> pages of that list
    max_page_number: int
    api_page_size: int
    search_minimum: int = 1  # text search finds something (a tiny collection may not)
    first_ids: dict[tuple[str, str], int] = field(default_factory=dict)


class WrongAnswer(AssertionError):
    pass


@dataclass
class Kind:
    name: str
    users: tuple[str, ...]
    api: bool  # the token session, else the logged-in browser session
    request: Callable  # (ctx, user, i, state) -> (method, url, extra)
    check: Callable  # (ctx, user, response, state) -> None, raises WrongAnswer


def html_page(response, marker: str | None = None) -> str:
    body = response.text
    if "text/html" not in response.headers.get("Content-Type", ""):
        raise WrongAnswer(f"not an HTML page: {response.headers.get('Content-Type')}")
    if 'name="password"' in body:
        raise WrongAnswer("the login page")
    if marker and marker not in body:
        raise WrongAnswer(f"no {marker!r} in the page")
    return body


def cards(response, minimum: int = 1) -> list[int]:
    found = [int(i) for i in CARD.findall(html_page(response))]
    if len(found) < minimum:
        raise WrongAnswer(f"{len(found)} images on the page, expected at least {minimum}")
    return found


def results(response, minimum: int = 1) -> list[dict]:
    data = response.json()
    found = data["results"] if isinstance(data, dict) else data
    if len(found) < minimum:
        raise WrongAnswer(f"{len(found)} results, expected at least {minimum}")
    return found


def page_size(ctx: Context) -> str:
    return "" if ctx.api_page_size == API_PAGE else f"&page_size={ctx.api_page_size}"


def deep_numbers(ctx: Context, user: str, key: str, i: int) -> int:
    pages = min(ctx.pages[(user, key)], ctx.max_page_number)
    lo = max(2, pages // 2)
    return lo + (i * 7919) % max(1, pages - lo + 1)


def gallery_kind(name: str, query: str, minimum: int = 1) -> Kind:
    return Kind(name, USERS, False, lambda ctx, user, i, s: ("GET", "/gallery/" + query, {}),
                lambda ctx, user, r, s: cards(r, minimum))


def api_kind(name: str, query: str) -> Kind:
    return Kind(name, USERS, True, lambda ctx, user, i, s: ("GET", "/api/images/" + query, {}),
                lambda ctx, user, r, s: results(r))


def gallery_deep_number() -> Kind:
    def request(ctx, user, i, state):
        state["page"] = deep_numbers(ctx, user, "gallery", i)
        return "GET", f"/gallery/?page={state['page']}", {}

    def check(ctx, user, r, state):
        if cards(r)[0] == ctx.first_ids[(user, "gallery")]:
            raise WrongAnswer(f"page {state['page']} shows the first page")

    return Kind("gallery, deep page numbers", USERS, False, request, check)


def gallery_next_link(body: str) -> str | None:
    found = NEXT_LINK.search(body) or OLD_NEXT_LINK.search(body)
    return "/gallery/" + html.unescape(found.group(1)) if found else None


def walk_kind(name: str, api: bool, start: Callable, next_of: Callable,
              check_page: Callable) -> Kind:
    """Follow next links from a deep page: the start page (untimed) is fetched again
    whenever the walk runs off the end."""

    def request(ctx, user, i, state):
        if not state.get("next"):
            method, url, extra = start(ctx, user)
            answer = state["session"].get(absolute(ctx, url), timeout=state["timeout"],
                                          allow_redirects=False)
            problem = basic_problem(answer)
            if problem:
                raise WrongAnswer(f"{url}: {problem}")
            state["next"] = next_of(answer)
            if not state["next"]:
                raise WrongAnswer(f"{url}: no next link on a deep page")
        return "GET", state["next"], {}

    def check(ctx, user, r, state):
        check_page(r)
        state["next"] = next_of(r)

    return Kind(name, USERS, api, request, check)


def api_deep_number(name: str, key: str, query: str) -> Kind:
    def request(ctx, user, i, state):
        state["page"] = deep_numbers(ctx, user, key, i)
        return "GET", f"/api/images/?{query}page={state['page']}{page_size(ctx)}", {}

    def check(ctx, user, r, state):
        if results(r)[0]["id"] == ctx.first_ids[(user, key)]:
            raise WrongAnswer(f"page {state['page']} is the first page")

    return Kind(name, USERS, True, request, check)


def api_next(r) -> str | None:
    return r.json().get("next")


def text_query(i: int) -> str:
    return quote(TEXT_QUERIES[i % len(TEXT_QUERIES)])


def anchor(ctx: Context, i: int) -> int:
    return ctx.anchors[i % len(ctx.anchors)]


def admin_list(response) -> None:
    body = html_page(response, 'id="result_list"')
    if body.count("<tr") < 2:
        raise WrongAnswer("no rows in the admin list")


def batch_api_check(ctx: Context, user: str, r, state) -> None:
    data = r.json()
    want = min(BATCH_ITEMS_PAGE, ctx.big_batch_items)
    if data.get("total") != ctx.big_batch_items or len(data.get("images", [])) != want:
        raise WrongAnswer(f"total {data.get('total')}, {len(data.get('images', []))} items; "
                          f"expected {ctx.big_batch_items} and {want}")


def batch_pages_request(ctx, user, i, state):
    """A later page of the batch's items, as its ``images_next`` link asks for one (the
    position the page starts after), cycling over the batch's pages."""
    step = min(BATCH_ITEMS_PAGE, max(1, ctx.big_batch_items // 4))
    after = step * (1 + i % max(1, (ctx.big_batch_items - 1) // step)) - 1
    return "GET", f"/api/batches/{ctx.big_batch}/?images_after={after}", {}


def batch_pages_check(ctx, user, r, state):
    if not r.json().get("images"):
        raise WrongAnswer("an empty page of batch items")


def geojson_check(ctx, user, r, state):
    features = r.json().get("features", [])
    if len(features) != ctx.scene_tiles:
        raise WrongAnswer(f"{len(features)} tiles, expected {ctx.scene_tiles}")


def image_search(ctx, user, i, state):
    name, data = ctx.chips[i % len(ctx.chips)]
    return "POST", "/api/search/", {"files": {"file": (name, data, "image/jpeg")}}


def kinds() -> list[Kind]:
    tags3 = "tags=water&tags=road&tags=habitation"
    unreviewed = "reviewed=false&min_confidence=0.5"
    out = [
        gallery_kind("gallery, no filter", ""),
        gallery_kind("gallery, one tag", "?tags=water"),
        gallery_kind("gallery, three tags any", "?" + tags3),
        gallery_kind("gallery, three tags all", f"?{tags3}&match=all"),
        gallery_kind("gallery, rare tag blow_down", "?tags=blow_down"),
        gallery_kind("gallery, unreviewed + min confidence", "?" + unreviewed),
        Kind("gallery, reviewed + tag", USERS, False,  # few at --smoke sizes
             lambda ctx, user, i, s: ("GET", "/gallery/?reviewed=true&tags=water", {}),
             lambda ctx, user, r, s: cards(r, ctx.search_minimum)),
        Kind("gallery, one batch", USERS, False,
             lambda ctx, user, i, s: ("GET", f"/gallery/?batch={ctx.big_batch}", {}),
             lambda ctx, user, r, s: cards(r)),
        gallery_deep_number(),
        walk_kind("gallery, next links from a deep page", False,
                  lambda ctx, user: ("GET", "/gallery/?page="
                                     f"{deep_numbers(ctx, user, 'gallery', 0)}", {}),
                  lambda r: gallery_next_link(r.text), lambda r: cards(r)),
        api_kind("api images, no filter", ""),
        api_kind("api images, one tag", "?tags=water"),
        api_kind("api images, three tags any", "?tags=water,road,habitation"),
        api_kind("api images, three tags all", "?tags=water,road,habitation&match=all"),
        api_kind("api images, rare tag blow_down", "?tags=blow_down"),
        api_kind("api images, unreviewed + min confidence", "?" + unreviewed),
        Kind("api images, reviewed + tag", USERS, True,
             lambda ctx, user, i, s: ("GET", "/api/images/?reviewed=true&tags=water", {}),
             lambda ctx, user, r, s: results(r, ctx.search_minimum)),
        Kind("api images, one batch", USERS, True,
             lambda ctx, user, i, s: ("GET", f"/api/images/?batch={ctx.big_batch}", {}),
             lambda ctx, user, r, s: results(r)),
        api_deep_number("api images, deep page numbers", "api", ""),
        walk_kind("api images, next links from a deep page", True,
                  lambda ctx, user: ("GET", "/api/images/?page="
                                     f"{deep_numbers(ctx, user, 'api', 0)}{page_size(ctx)}",
                                     {}),
                  api_next, results),
        api_deep_number("api images, one tag, deep page numbers", "api-water", "tags=water&"),
        walk_kind("api images, one tag, next links from a deep page", True,
                  lambda ctx, user: ("GET", "/api/images/?tags=water&page="
                                     f"{deep_numbers(ctx, user, 'api-water', 0)}"
                                     f"{page_size(ctx)}", {}),
                  api_next, results),
        Kind("gallery, text search + tag", USERS, False,
             lambda ctx, user, i, s: ("GET", f"/gallery/?q={text_query(i)}&tags=primary", {}),
             lambda ctx, user, r, s: cards(r, ctx.search_minimum)),
        Kind("gallery, similar + tag", USERS, False,
             lambda ctx, user, i, s: ("GET",
                                      f"/gallery/?similar={anchor(ctx, i)}&tags=primary", {}),
             lambda ctx, user, r, s: cards(r, 2)),
        Kind("api search, text", USERS, True,
             lambda ctx, user, i, s: ("GET", f"/api/search/?q={text_query(i)}", {}),
             lambda ctx, user, r, s: results(r, ctx.search_minimum)),
        Kind("api search, image file", USERS, True, image_search,
             lambda ctx, user, r, s: results(r)),
        Kind("api similar", USERS, True,
             lambda ctx, user, i, s: ("GET", f"/api/images/{anchor(ctx, i)}/similar/", {}),
             lambda ctx, user, r, s: results(r)),
        Kind("admin images", ("owner-all",), False,
             lambda ctx, user, i, s: ("GET", "/admin/webapp/image/", {}),
             lambda ctx, user, r, s: admin_list(r)),
        Kind("admin images, label filter", ("owner-all",), False,
             lambda ctx, user, i, s: ("GET", "/admin/webapp/image/?label=water", {}),
             lambda ctx, user, r, s: admin_list(r)),
        Kind("admin images, name search", ("owner-all",), False,
             lambda ctx, user, i, s: ("GET", f"/admin/webapp/image/?q=train_{i % 9 + 1}", {}),
             lambda ctx, user, r, s: admin_list(r)),
        Kind("admin images, id search", ("owner-all",), False,
             lambda ctx, user, i, s: ("GET", f"/admin/webapp/image/?q=img_{anchor(ctx, i)}",
                                      {}),
             lambda ctx, user, r, s: admin_list(r)),
        Kind("admin predictions", ("owner-all",), False,
             lambda ctx, user, i, s: ("GET", "/admin/webapp/prediction/", {}),
             lambda ctx, user, r, s: admin_list(r)),
        Kind("admin review queue", ("owner-all",), False,
             lambda ctx, user, i, s: ("GET", "/admin/webapp/reviewqueue/", {}),
             lambda ctx, user, r, s: admin_list(r)),
        Kind("admin labels with counts", ("owner-all",), False,
             lambda ctx, user, i, s: ("GET", "/admin/webapp/label/", {}),
             lambda ctx, user, r, s: admin_list(r)),
        Kind("api review queue", ("owner-all",), True,
             lambda ctx, user, i, s: ("GET", "/api/images/review/", {}),
             lambda ctx, user, r, s: results(r)),
        Kind("api review queue, label filter", USERS, True,
             lambda ctx, user, i, s: ("GET", "/api/images/review/?label="
                                      f"{('water', 'road', 'habitation')[i % 3]}", {}),
             lambda ctx, user, r, s: results(r)),
        Kind("api labels with counts", USERS, True,
             lambda ctx, user, i, s: ("GET", "/api/labels/", {}),
             lambda ctx, user, r, s: results(r)),
        Kind("batch page, 2,000 files", USERS, False,
             lambda ctx, user, i, s: ("GET", f"/batches/{ctx.big_batch}/", {}),
             lambda ctx, user, r, s: html_page(r, f"#{ctx.big_batch}")),
        Kind("api batch, 2,000 files", USERS, True,
             lambda ctx, user, i, s: ("GET", f"/api/batches/{ctx.big_batch}/", {}),
             batch_api_check),
        Kind("api batch, later item pages", USERS, True, batch_pages_request, batch_pages_check),
        Kind("scene page, 1,600 tiles", USERS, False,
             lambda ctx, user, i, s: ("GET", f"/scenes/{ctx.scene}/", {}),
             lambda ctx, user, r, s: html_page(r, 'id="scene"')),
        Kind("scene tiles.geojson", USERS, True,
             lambda ctx, user, i, s: ("GET", f"/api/scenes/{ctx.scene}/tiles.geojson", {}),
             geojson_check),
    ]
    return out


def absolute(ctx: Context, url: str) -> str:
    return url if url.startswith("http") else ctx.base + url


def basic_problem(response) -> str | None:
    if response.status_code != 200:
        where = response.headers.get("Location", "")
        return f"status {response.status_code}" + (f" -> {where}" if where else "")
    if not response.content:
        return "an empty body"
    return None


@dataclass
class Timing:
    name: str
    user: str
    n_images: int
    samples: list[float]
    note: str = ""

    def record(self) -> dict:
        a = np.array(self.samples)
        out = {"name": self.name, "user": self.user, "n_images": self.n_images,
               "requests": len(a), "p50_ms": round(float(np.percentile(a, 50)), 1),
               "p95_ms": round(float(np.percentile(a, 95)), 1),
               "max_ms": round(float(a.max()), 1)}
        if self.note:
            out["note"] = self.note
        return out


def clone(sess):
    """A session of the same user for another thread (requests' sessions are not shared
    across threads)."""
    other = session()
    other.headers.update(sess.headers)
    other.cookies.update(sess.cookies)
    return other


def warm_kind(kind: Kind, user: str, sess, ctx: Context, args) -> None:
    """One request of this kind in every worker at once (concurrent requests land on
    every idle worker): per-process first-use costs (templates, lazy imports, caches)
    stay out of the timed requests. Answers are checked in the timed pass."""

    def one(i: int) -> None:
        mine = clone(sess)
        state = {"session": mine, "timeout": args.timeout}
        try:
            method, url, extra = kind.request(ctx, user, i, state)
            mine.request(method, absolute(ctx, url), timeout=args.timeout,
                         allow_redirects=False, **extra)
        except Exception:  # noqa: BLE001 - the timed pass reports what is wrong
            pass

    threads = [threading.Thread(target=one, args=(i,)) for i in range(args.workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def time_kind(kind: Kind, user: str, sess, ctx: Context, args, deadline: float) -> Timing:
    state = {"session": sess, "timeout": args.timeout}
    samples: list[float] = []
    started = time.monotonic()
    note = ""
    for i in range(args.warmup + args.requests):
        if time.monotonic() > deadline:
            raise BenchError(f"--max-minutes {args.max_minutes} passed")
        method, url, extra = kind.request(ctx, user, i, state)
        begin = time.perf_counter()
        answer = sess.request(method, absolute(ctx, url), timeout=args.timeout,
                              allow_redirects=False, **extra)
        ms = (time.perf_counter() - begin) * 1000
        problem = basic_problem(answer)
        if problem is None:
            try:
                kind.check(ctx, user, answer, state)
            except (WrongAnswer, ValueError, KeyError, TypeError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
        if problem:
            raise WrongAnswer(f"{method} {url}: {problem}")
        if i >= args.warmup:
            samples.append(ms)
        if samples and time.monotonic() - started > args.kind_budget \
                and i + 1 < args.warmup + args.requests:
            note = f"stopped after {args.kind_budget:.0f} s (--kind-budget)"
            break
    return Timing(kind.name, user, ctx.n_images, samples, note)


# --- one size ----------------------------------------------------------------------------

def visible_counts(url: str, users: Users, min_coverage: float, api_page: int
                   ) -> dict[tuple[str, str], int]:
    """How many images each user's newest-first lists hold (for deep page numbers)."""
    import psycopg

    water = "EXISTS (SELECT 1 FROM webapp_imagelabel l JOIN webapp_label n ON n.id = " \
            "l.label_id WHERE l.image_id = i.id AND n.name = 'water')"
    visible = {
        "owner-all": "TRUE",
        "owner-plain": "(NOT i.scene_only OR EXISTS (SELECT 1 FROM webapp_scenetile t JOIN "
                       "webapp_scene s ON s.id = t.scene_id JOIN webapp_batch b ON b.id = "
                       f"s.batch_id WHERE t.image_id = i.id AND b.owner_id = "
                       f"{users.ids['owner-plain']}))",
    }
    out = {}
    with psycopg.connect(url) as conn:
        for user, where in visible.items():
            base = f"SELECT count(*) FROM webapp_image i WHERE i.status = 'ready' AND " \
                   f"i.coverage >= {min_coverage} AND {where}"
            total = conn.execute(base).fetchone()[0]
            tagged = conn.execute(f"{base} AND {water}").fetchone()[0]
            out[(user, "gallery")] = max(1, math.ceil(total / GALLERY_PAGE))
            out[(user, "api")] = max(1, math.ceil(total / api_page))
            out[(user, "api-water")] = max(1, math.ceil(tagged / api_page))
    return out


def warm_search(server: Server, token: str, args, rounds: int = 3) -> None:
    """Every worker loads its search index (concurrent searches land on every idle
    worker) before anything is timed: the cold start is measured on its own."""
    errors: list[str] = []

    def one(i: int) -> None:
        s = token_session(token)
        try:
            answer = s.get(f"{server.base}/api/search/?q={text_query(i)}", timeout=300)
            if answer.status_code != 200:
                errors.append(f"status {answer.status_code}")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(str(exc))

    for r in range(rounds):
        threads = [threading.Thread(target=one, args=(r * 10 + k,))
                   for k in range(2 * args.workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise BenchError(f"search warm-up failed: {errors[:3]}")


def process_memory(pid: int) -> dict[str, float]:
    """RSS; USS (the process's own pages); PSS (shared pages split among their sharers)."""
    import psutil

    info = psutil.Process(pid).memory_full_info()
    return {"rss": info.rss / 2**20, "uss": info.uss / 2**20, "pss": info.pss / 2**20}


def web_memory(server: Server, n_images: int) -> dict:
    """The gunicorn master's and its workers' memory once every worker has served every
    request kind (search included): what each web process costs in steady use."""
    workers = [process_memory(pid) for pid in server.worker_pids()]
    master = process_memory(server.process.pid)
    return {"name": "web processes", "n_images": n_images, "workers": len(workers),
            "worker_uss_mb_max": round(max(w["uss"] for w in workers), 1),
            "worker_pss_mb_max": round(max(w["pss"] for w in workers), 1),
            "worker_rss_mb_max": round(max(w["rss"] for w in workers), 1),
            "master_pss_mb": round(master["pss"], 1), "master_rss_mb": round(master["rss"], 1),
            "total_pss_mb": round(master["pss"] + sum(w["pss"] for w in workers), 1)}


def cold_start(env: dict[str, str], tmp: Path, token: str, chip: tuple[str, bytes],
               n_images: int, args) -> list[dict]:
    """The first text search, and the first image search, each in a fresh one-worker
    gunicorn (gunicorn.conf.py): as shipped, the master loads the search model and index
    before it forks (SEARCH_PRELOAD), and without that (SEARCH_PRELOAD=0: the worker
    loads them in its first search). Seconds until the server answers, seconds of the
    first search, the worker's memory (RSS; USS, its own pages; PSS, shared pages split
    among their sharers) and the master's."""
    out = []
    for preload in (True, False):
        for query in ("text", "image"):
            begin = time.perf_counter()
            server = Server({**env, "SEARCH_PRELOAD": "1" if preload else "0"}, 1,
                            tmp / f"gunicorn-cold-{n_images}-{query}-{preload}.log")
            up = time.perf_counter() - begin
            try:
                s = token_session(token)
                s.get(server.base + "/healthz", timeout=args.timeout)
                worker = server.worker_pids()[0]
                before = process_memory(worker)
                begin = time.perf_counter()
                if query == "text":
                    answer = s.get(f"{server.base}/api/search/?q=river", timeout=args.timeout)
                else:
                    answer = s.post(f"{server.base}/api/search/", timeout=args.timeout,
                                    files={"file": (chip[0], chip[1], "image/jpeg")})
                seconds = time.perf_counter() - begin
                if answer.status_code != 200 or "results" not in answer.json():
                    raise WrongAnswer(f"cold {query} search: {answer.status_code} "
                                      f"{answer.text[:300]}")
                after, master = process_memory(worker), process_memory(server.process.pid)
            finally:
                server.stop()
            out.append({"name": "search cold start", "query": query, "preload": preload,
                        "n_images": n_images, "server_up_seconds": round(up, 2),
                        "seconds": round(seconds, 2), "rss_mb": round(after["rss"], 1),
                        "rss_before_mb": round(before["rss"], 1),
                        "rss_added_mb": round(after["rss"] - before["rss"], 1),
                        "uss_mb": round(after["uss"], 1), "pss_mb": round(after["pss"], 1),
                        "master_rss_mb": round(master["rss"], 1),
                        "master_uss_mb": round(master["uss"], 1)})
    return out


def export_labels(env: dict[str, str], tmp: Path, n_ready: int, n_images: int,
                  args) -> dict:
    """``manage.py export_labels`` of the whole collection: wall time, peak RSS."""
    out = tmp / f"labels-{n_images}.csv"
    begin = time.perf_counter()
    child = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "export_labels",
                              str(out), "-v", "0"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             start_new_session=True)
    timer = threading.Timer(args.max_minutes * 60, lambda: os.killpg(child.pid,
                                                                     signal.SIGKILL))
    timer.start()
    # The exported process's own peak: VmHWM of /proc/PID/status, polled (it only
    # grows). Not wait4's ru_maxrss: that also counts the forked copy of this bench
    # process (its seeding arrays: 1 GB and more) that lived until exec.
    peak_kb = [0]

    def watch() -> None:
        while child.poll() is None:
            try:
                with open(f"/proc/{child.pid}/status") as status_file:
                    for line in status_file:
                        if line.startswith("VmHWM:"):
                            peak_kb[0] = max(peak_kb[0], int(line.split()[1]))
            except OSError:
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        stderr = child.stderr.read() if child.stderr else b""
        child.wait()
        watcher.join(timeout=5)
    finally:
        timer.cancel()
    seconds = time.perf_counter() - begin
    if child.returncode != 0:
        raise WrongAnswer(f"export_labels exited {child.returncode}: "
                          f"{stderr.decode(errors='replace')[-2000:]}")
    with open(out, "rb") as handle:
        lines = sum(1 for _ in handle)
    out.unlink()
    if lines != n_ready + 1:
        raise WrongAnswer(f"export_labels wrote {lines - 1} images, expected {n_ready}")
    return {"name": "export_labels", "n_images": n_images, "seconds": round(seconds, 2),
            "peak_mb": round(peak_kb[0] / 1024, 1)}


def measure(label: str, env: dict[str, str], tmp: Path, plan: Plan, users: Users,
            n_images: int, args, deadline: float, failures: list[str]) -> dict:
    """Every request kind at this size; then export_labels and the cold start."""
    url = env["DATABASE_URL"]
    counts = visible_counts(url, users, args.min_coverage, args.api_page_size)
    big = plan.units[0]
    anchors = [big.first_image + 10 + 37 * k for k in range(8) if 10 + 37 * k < big.files]
    ctx = Context("", n_images, plan.big_batch, big.files + big.failed, plan.scene,
                  plan.grid * plan.grid, anchors or [big.first_image],
                  list(synthetic_chips(6, seed=24)), counts, args.max_page_number,
                  args.api_page_size, 1 if n_images >= 1000 else 0)
    timings: dict[tuple[str, str], dict] = {}
    say(f"[{label}] gunicorn with {args.workers} workers on {n_images:,} images")
    server = Server(env, args.workers, tmp / f"gunicorn-{n_images}.log")
    try:
        ctx.base = server.base
        pages = {u: login(server.base, u, args.timeout) for u in USERS}
        api = {u: token_session(users.tokens[u]) for u in USERS}
        begin = time.perf_counter()
        warm_search(server, users.tokens["owner-all"], args)
        say(f"[{label}] search warmed in every worker ({time.perf_counter() - begin:.1f} s)")
        for user in USERS:
            first = cards(pages[user].get(server.base + "/gallery/", timeout=args.timeout))
            ctx.first_ids[(user, "gallery")] = first[0]
            for key, query in (("api", ""), ("api-water", "?tags=water")):
                got = results(api[user].get(f"{server.base}/api/images/{query}",
                                            timeout=args.timeout))
                ctx.first_ids[(user, key)] = got[0]["id"]
        for kind in kinds():
            for user in kind.users:
                sess = api[user] if kind.api else pages[user]
                try:
                    warm_kind(kind, user, sess, ctx, args)
                    timing = time_kind(kind, user, sess, ctx, args, deadline)
                except WrongAnswer as exc:
                    failures.append(f"{kind.name} ({user}, {n_images:,} images): {exc}")
                    emit({"name": kind.name, "user": user, "n_images": n_images,
                          "error": str(exc)[:500]})
                    say(f"[{label}] FAILED {kind.name} ({user}): {exc}")
                    continue
                except Exception as exc:  # requests' timeouts and connection errors
                    if isinstance(exc, BenchError):
                        raise
                    failures.append(f"{kind.name} ({user}, {n_images:,} images): {exc}")
                    emit({"name": kind.name, "user": user, "n_images": n_images,
                          "error": f"{type(exc).__name__}: {str(exc)[:400]}"})
                    say(f"[{label}] FAILED {kind.name} ({user}): {exc}")
                    continue
                record = timing.record()
                timings[(kind.name, user)] = record
                emit(record)
        emit(web_memory(server, n_images))
    finally:
        server.stop()
    log = server.text()
    errors = len(re.findall(r"^Traceback", log, re.M))
    server_errors = len(re.findall(r"^ACCESS \S+ \S+ 5\d\d ", log, re.M))
    if errors or server_errors:
        say(f"[{label}] gunicorn log: {errors} tracebacks, {server_errors} 5xx answers "
            f"({server.log_path})")
    n_ready = n_images  # every seeded image is ready
    say(f"[{label}] export_labels")
    try:
        emit(export_labels(env, tmp, n_ready, n_images, args))
    except WrongAnswer as exc:
        failures.append(f"export_labels ({n_images:,} images): {exc}")
        emit({"name": "export_labels", "n_images": n_images, "error": str(exc)[:500]})
    say(f"[{label}] search cold start")
    try:
        for record in cold_start(env, tmp, users.tokens["owner-all"], ctx.chips[0],
                                 n_images, args):
            emit(record)
    except WrongAnswer as exc:
        failures.append(f"search cold start ({n_images:,} images): {exc}")
        emit({"name": "search cold start", "n_images": n_images, "error": str(exc)[:500]})
    return timings


# --- main --------------------------------------------------------------------------------

def environment(args, bench_url: str, tmp: Path, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DEBUG", "PUBLIC_READS", "DJANGO_SETTINGS_MODULE", "VAR_DIR",
                        "MEDIA_ROOT", "SEARCH_SYNC_SECONDS")}
    rate = "1000000/second"  # per-second windows: no throttle, and short histories
    env.update({
        "DJANGO_SETTINGS_MODULE": "webapp.settings", "DATABASE_URL": bench_url,
        "VAR_DIR": str(tmp / "var"), "MEDIA_ROOT": str(tmp / "media"),
        "SECRET_KEY": f"bench-scale-{secrets.token_hex(16)}",
        "ALLOWED_HOSTS": "127.0.0.1,localhost", "DEBUG": "0", "REDIS_URL": redis_url,
        "CELERY_QUEUE": "bench-scale", "PYTHONUNBUFFERED": "1",
        "THROTTLE_ANON": rate, "THROTTLE_USER": rate, "THROTTLE_UPLOADS": rate,
        "THROTTLE_IMAGE_SEARCH": rate, "THROTTLE_GALLERY_SEARCH": rate,
    })
    return env


def seed_units(seeder: Seeder, units: list[Unit], n_images: int, label: str) -> None:
    say(f"[{label}] seeding {sum(u.files for u in units):,} images in {len(units)} batches")
    begin = time.perf_counter()
    rows = seeder.seed(units)
    seeded = time.perf_counter() - begin
    begin = time.perf_counter()
    seeder.vacuum()
    vacuumed = time.perf_counter() - begin
    size = seeder.conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    seeder.conn.commit()
    emit({"name": "seed", "n_images": n_images, "added": sum(u.files for u in units),
          "seconds": round(seeded, 1), "vacuum_analyze_seconds": round(vacuumed, 1),
          "database_mb": round(size / 2**20), "rows": rows})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=30, help="timed requests per kind")
    parser.add_argument("--warmup", type=int, default=2, help="untimed requests first")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn processes")
    parser.add_argument("--owners", type=int, default=50)
    parser.add_argument("--scenes", type=int, default=3, help="scenes at the full size")
    parser.add_argument("--scene-tiles", type=int, default=1600, help="a square number")
    parser.add_argument("--big-batch", type=int, default=2000, help="files of the timed batch")
    parser.add_argument("--batch-max", type=int, default=2000, help="largest other batch")
    parser.add_argument("--reviewed", type=float, default=0.02, help="share reviewed")
    parser.add_argument("--database", default="bench_scale")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per request")
    parser.add_argument("--kind-budget", type=float, default=300,
                        help="seconds of requests per kind before it stops early")
    parser.add_argument("--max-minutes", type=float, default=360, help="wall-clock cap")
    parser.add_argument("--max-page-number", type=int, default=100,
                        help="the deepest page number the app serves "
                             "(webapp.services.keyset.MAX_PAGE_NUMBER)")
    parser.add_argument("--api-page-size", type=int, default=API_PAGE,
                        help="page_size of the API's deep pages (the API's default: 50)")
    parser.add_argument("--min-coverage", type=float, default=0.5,
                        help="MIN_TILE_COVERAGE of the app (tiles below are hidden)")
    parser.add_argument("--keep", action="store_true",
                        help="leave the database and print its URL and the users' tokens")
    parser.add_argument("--seed-only", action="store_true",
                        help="seed --images and keep the database (implies --keep); "
                             "time nothing: for timing requests of one's own on it")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run for the test suite: 400 images over 200, 3 requests")
    args = parser.parse_args()
    args.keep = args.keep or args.seed_only
    if args.smoke:
        args.images, args.baseline, args.requests, args.warmup = 400, 200, 3, 1
        args.workers, args.owners, args.scenes, args.scene_tiles = 2, 6, 2, 16
        args.big_batch, args.batch_max, args.database = 40, 40, "bench_scale_smoke"
        args.kind_budget, args.max_minutes, args.api_page_size = 60, 10, 5
    grid = math.isqrt(args.scene_tiles)
    if grid * grid != args.scene_tiles or grid < 2:
        parser.error("--scene-tiles must be a square number of at least 4")
    if args.baseline < args.big_batch + args.scene_tiles + 20 or args.images <= args.baseline:
        parser.error("--baseline must hold the big batch and a scene, --images more")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", args.database):
        parser.error("--database: lower-case letters, digits and _")
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        parser.error("set DATABASE_URL to a PostgreSQL server (postgres://user@host:port/db)")

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    def out_of_time(signum, frame):
        raise BenchError(f"--max-minutes {args.max_minutes} passed")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(int(args.max_minutes * 60) + 60)  # the hard stop behind the soft one
    deadline = time.monotonic() + args.max_minutes * 60
    bench_url = with_database(url, args.database)
    admin_url = with_database(url, "postgres")
    failures: list[str] = []
    created = False
    redis = None
    seeder = None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        tmp = Path(folder)
        try:
            (tmp / "redis").mkdir()
            redis = RedisServer(tmp / "redis")
            env = environment(args, bench_url, tmp, redis.url)
            say(f"database {args.database} on {urlsplit(url).hostname}; "
                f"{args.images:,} images against {args.baseline:,}")
            recreate_database(admin_url, args.database)
            created = True
            setup_django(env)
            from django.core.management import call_command

            begin = time.perf_counter()
            call_command("migrate", verbosity=0)
            users = create_users(args.owners)
            say(f"migrated, {len(users.ids)} users ({time.perf_counter() - begin:.1f} s)")
            rng = np.random.default_rng(24)
            plan = make_plan(args, users, rng)
            seeder = Seeder(bench_url, plan, users, args, rng)
            base_units = plan.units[:plan.baseline_units]
            seed_units(seeder, base_units, args.baseline, "baseline")
            small = {} if args.seed_only else measure(
                "baseline", env, tmp, plan, users, args.baseline, args, deadline, failures)
            seed_units(seeder, plan.units[plan.baseline_units:], args.images, "full")
            seeder.close()
            seeder = None
            big = {} if args.seed_only else measure(
                "full", env, tmp, plan, users, args.images, args, deadline, failures)
            for key, record in big.items():
                if key in small:
                    emit({"name": key[0], "user": key[1], "n_images": args.images,
                          "baseline": args.baseline,
                          "ratio_p50": round(record["p50_ms"] / small[key]["p50_ms"], 2),
                          "ratio_p95": round(record["p95_ms"] / small[key]["p95_ms"], 2)})
            if args.keep:
                emit({"name": "kept", "database_url": bench_url, "users": {
                    u: {"password": PASSWORDS[u], "token": users.tokens[u]} for u in USERS},
                      "big_batch": plan.big_batch, "scene": plan.scene})
                say(f"kept: DATABASE_URL={bench_url}")
        except KeyboardInterrupt:
            failures.append("interrupted")
            say("interrupted: cleaning up")
        except BenchError as exc:
            failures.append(str(exc))
            say(f"stopped: {exc}")
        finally:
            signal.alarm(0)
            if seeder is not None:
                seeder.close()
            try:
                from django.db import connections

                connections.close_all()
            except Exception:  # noqa: BLE001 - Django may not be set up yet
                pass
            if created and not args.keep:
                try:
                    recreate_database(admin_url, args.database, drop_only=True)
                except Exception as exc:  # noqa: BLE001 - say so, go on cleaning
                    say(f"could not drop the database {args.database}: {exc}")
            if redis is not None:
                redis.stop()
    say(f"done in {(time.perf_counter() - started) / 60:.1f} min; peak RSS of this process "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if failures:
        say("FAILED:\n  " + "\n  ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
