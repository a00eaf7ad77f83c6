"""The learning loop end to end, through the HTTP API of a running app (``make run``):
labels -> upload -> curate -> train -> compare -> activate with re-tagging.

    python -m experiments.learning_loop_api --url http://127.0.0.1:8000 --token TOKEN \\
        --ucm ../shared/data/ucm --probe ../shared/data/planet-32px/train-jpg.tar \\
        [--limit 0] [--reviewed-share 0.7] [--probe-n 24] [--probes 3] [--epochs N]

1. creates the labels of ``--ucm/labels.csv`` (``POST /api/labels/``; one that exists is
   kept), uploads its images (``POST /api/batches/``, 100 files a request) and waits
   until the shipped model tagged them;
2. sets the labels of every evaluation image and of ``--reviewed-share`` of the train
   images (``PATCH /api/images/{id}/``); the other train images stay unreviewed;
3. times upload tagging latency (a batch of ``--probe-n`` new Planet chips, submit ->
   done) ``--probes`` times with no training running;
4. ``POST /api/trainings/`` with the defaults (or ``--epochs``) and times it to the
   candidate, running the same latency probes (other chips) while it trains;
5. ``GET /api/models/{candidate}/compare/``: F2 on the evaluation images of the
   candidate against the active model, with the paired bootstrap interval;
6. ``POST /api/models/{candidate}/activate/ {"retag": true}`` and times the re-tagging.

Prints one JSON line per measurement. The token's user needs the curator permissions and
change_modelversion (the admin of ``make run`` has them: ``manage.py drf_create_token
admin``). Nothing is faked: every figure is a wall-clock time of real requests.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import statistics
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests

BATCH_FILES = 100


class Api:
    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Token {token}",
                                     "Accept": "application/json"})

    def __call__(self, method: str, path: str, expect: tuple[int, ...] = (200,), **kwargs):
        response = self.session.request(method, self.url + path, timeout=300, **kwargs)
        if response.status_code not in expect:
            raise SystemExit(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None


def report(name: str, **values) -> None:
    print(json.dumps({"name": name, **values}), flush=True)


def tar_images(path: Path, skip: int = 0, limit: int = 0) -> Iterator[tuple[str, bytes]]:
    """(file name, bytes) of the JPEGs of a tar, in order, after ``skip``."""
    seen = 0
    with tarfile.open(path) as archive:
        for member in archive:
            if not member.isfile() or not member.name.lower().endswith((".jpg", ".jpeg")):
                continue
            seen += 1
            if seen <= skip:
                continue
            yield Path(member.name).name, archive.extractfile(member).read()
            if limit and seen - skip >= limit:
                return


def upload(api: Api, files: list[tuple[str, bytes]]) -> int:
    """One submitted batch of these files; returns its id."""
    batch = api("POST", "/api/batches/", expect=(202,), data={"submit": "false"})
    for start in range(0, len(files), BATCH_FILES):
        part = files[start:start + BATCH_FILES]
        api("POST", f"/api/batches/{batch['id']}/files/", expect=(202,),
            files=[("files", (name, io.BytesIO(data), "image/jpeg")) for name, data in part])
    api("POST", f"/api/batches/{batch['id']}/submit/", expect=(202,))
    return batch["id"]


def wait_batch(api: Api, batch_id: int, timeout: float = 7200) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        batch = api("GET", f"/api/batches/{batch_id}/?fields=counts")
        if batch["status"] == "done":
            return batch
        time.sleep(0.5)
    raise SystemExit(f"batch {batch_id} not done after {timeout}s")


def batch_images(api: Api, batch_id: int) -> dict[str, int]:
    """file name -> image id of a batch's items."""
    found: dict[str, int] = {}
    path = f"/api/batches/{batch_id}/"
    while path:
        page = api("GET", path)
        found.update({item["filename"]: item["id"] for item in page["images"] if item["id"]})
        path = page["images_next"].split("://", 1)[-1].split("/", 1)[-1] if \
            page.get("images_next") else None
        path = "/" + path if path else None
    return found


def probe_latency(api: Api, chips: Iterator[tuple[str, bytes]], n: int) -> float:
    """Seconds from submitting a batch of ``n`` new chips to its last tag."""
    files = [next(chips) for _ in range(n)]
    started = time.time()
    batch = upload(api, files)
    wait_batch(api, batch)
    return time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", required=True)
    parser.add_argument("--ucm", required=True, type=Path,
                        help="folder with labels.csv and images.tar")
    parser.add_argument("--probe", required=True, type=Path, help="tar of other chips")
    parser.add_argument("--limit", type=int, default=0, help="UCM images (0: all)")
    parser.add_argument("--reviewed-share", type=float, default=0.7)
    parser.add_argument("--probe-n", type=int, default=24)
    parser.add_argument("--probes", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    api = Api(args.url, args.token)

    with open(args.ucm / "labels.csv", newline="") as handle:
        truth = {row["image_name"]: sorted(set(row["tags"].split()))
                 for row in csv.DictReader(handle)}
    for name in sorted({tag for tags in truth.values() for tag in tags}):
        api("POST", "/api/labels/", expect=(201, 400), json={"name": name})

    files = list(tar_images(args.ucm / "images.tar", limit=args.limit))
    files = [(name, data) for name, data in files if Path(name).stem in truth]
    started = time.time()
    batch = upload(api, files)
    counts = wait_batch(api, batch)
    seconds = time.time() - started
    report("upload_and_tag", images=len(files), seconds=round(seconds, 1),
           images_per_s=round(len(files) / seconds, 2), failed=counts["failed"])

    ids = batch_images(api, batch)
    reviewed = 0
    for filename, image_id in ids.items():
        image = api("GET", f"/api/images/{image_id}/")
        share = int(hashlib.sha256(filename.encode()).hexdigest()[:8], 16) / 2**32
        if image["split"] == "evaluation" or share < args.reviewed_share:
            api("PATCH", f"/api/images/{image_id}/", json={"tags": truth[Path(filename).stem]})
            reviewed += 1
    report("curated", reviewed=reviewed, unreviewed=len(ids) - reviewed)

    chips = tar_images(args.probe)
    idle = [probe_latency(api, chips, args.probe_n) for _ in range(args.probes)]
    report("tagging_latency_idle", probe_images=args.probe_n,
           seconds=[round(s, 1) for s in idle], median=round(statistics.median(idle), 1))

    body = {} if args.epochs is None else {"epochs": args.epochs}
    started = time.time()
    job = api("POST", "/api/trainings/", expect=(202,), json=body)
    busy = []
    while True:
        job = api("GET", f"/api/trainings/{job['id']}/")
        if job["status"] not in ("queued", "running"):
            break
        if len(busy) < args.probes and job["phase"] == "training":
            busy.append(probe_latency(api, chips, args.probe_n))
        else:
            time.sleep(2)
    minutes = (time.time() - started) / 60
    if job["status"] != "done":
        raise SystemExit(f"training {job['id']} {job['status']}: {job['error']}")
    report("training", minutes=round(minutes, 1), epochs=job["epoch"], labels=job["labels"],
           images=job["images"], history=[(r["network"], r["epoch"], r["val_f2"])
                                          for r in job["history"]])
    report("tagging_latency_while_training", probe_images=args.probe_n,
           seconds=[round(s, 1) for s in busy],
           median=round(statistics.median(busy), 1) if busy else None,
           ratio=round(statistics.median(busy) / statistics.median(idle), 2) if busy else None)

    comparison = api("GET", f"/api/models/{job['model']}/compare/")
    report("compare", evaluation_images=comparison["evaluation_images"], **comparison["f2"])

    started = time.time()
    api("POST", f"/api/models/{job['model']}/activate/", expect=(202,), json={"retag": True})
    while True:
        retag = api("GET", f"/api/models/{job['model']}/")["retag"]
        if retag["status"] not in ("queued", "running"):
            break
        time.sleep(1)
    seconds = time.time() - started
    report("retag", status=retag["status"], images=retag["done"],
           predicted=retag["predicted"], seconds=round(seconds, 1),
           images_per_s=round(retag["done"] / seconds, 2))


if __name__ == "__main__":
    main()
