"""Gallery and image-API latency with 100,000 images, against the same pages at 1,000.

    python bench/bench_gallery.py [--n 100000] [--baseline 1000] [--repeat 5] [--smoke]

Builds a throw-away database (SQLite in a temp folder, or DATABASE_URL's server with a
`bench_gallery` database), fills it with synthetic images, predictions and labels drawn
from the Planet label frequencies, then times full page renders through Django's test
client for typical filters, as a user logged in through the login form (reads need a
login). Every timed answer must be the page itself (status 200, a non-empty body), never
a redirect or an error page. Prints milliseconds per request and the ratio 100k / 1k: a
gallery that scans everything grows ~100x; an indexed one stays near 1x.

``--smoke`` (the test suite's run): 30 and 60 images, one repeat; seconds, no figures
worth keeping.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from as_user import checked, logged_in_client  # noqa: E402

FREQUENCIES = {  # share of Planet chips carrying each label (train_v2.csv)
    "primary": 0.93, "clear": 0.70, "agriculture": 0.31, "road": 0.20, "water": 0.18,
    "partly_cloudy": 0.18, "cultivation": 0.11, "habitation": 0.09, "haze": 0.07,
    "cloudy": 0.05, "bare_ground": 0.02, "selective_logging": 0.008, "artisinal_mine": 0.008,
    "blooming": 0.008, "slash_burn": 0.005, "conventional_mine": 0.0025, "blow_down": 0.0025,
}
QUERIES = {
    "gallery, no filter": "/gallery/",
    "gallery, page 500": "/gallery/?page=500",
    "gallery, tags any water,road": "/gallery/?tags=water&tags=road",
    "gallery, tags all water,road,habitation":
        "/gallery/?tags=water&tags=road&tags=habitation&match=all",
    "gallery, rare tag blow_down": "/gallery/?tags=blow_down",
    "gallery, unreviewed, confidence>=0.5": "/gallery/?reviewed=false&min_confidence=0.5",
    "api images, tags all clear,primary": "/api/images/?tags=clear,primary&match=all",
}


def setup_django(db_dir: Path) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    os.environ["VAR_DIR"] = str(db_dir)
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        os.environ["DATABASE_URL"] = url.rsplit("/", 1)[0] + "/bench_gallery"
    else:
        os.environ["DATABASE_URL"] = f"sqlite:///{db_dir / 'bench.sqlite3'}"
    import django

    from webapp.conf import prepare_var_dir

    prepare_var_dir()  # as manage.py does: var/ before Django opens the database
    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = ["testserver"]
    settings.REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = []


def create_database() -> None:
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor == "postgresql":
        name = settings.DATABASES["default"]["NAME"]
        with connection._nodb_cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")
            cursor.execute(f"CREATE DATABASE {name}")
    call_command("migrate", verbosity=0)


def fill(total: int, start: int, rng) -> None:
    """Add images start..total-1 with a prediction and model labels each."""
    from tqdm import tqdm

    from webapp.models import Image, ImageLabel, Label, Prediction
    from webapp.services.model_registry import active_model

    model = active_model()
    labels = {label.name: label for label in Label.objects.all()}
    names = list(FREQUENCIES)
    chunk = 5000
    with tqdm(total=total - start, desc=f"filling to {total:,}", unit="img") as bar:
        for lo in range(start, total, chunk):
            hi = min(lo + chunk, total)
            images = Image.objects.bulk_create([
                Image(sha256=f"{i:064x}", file=f"originals/{i}.jpg", original_name=f"chip{i}.jpg",
                      format="JPEG", size_bytes=1000, width=256, height=256,
                      display=f"display/{i}.jpg", status=Image.Status.READY,
                      confidence=float(rng.random()), reviewed=bool(rng.random() < 0.1))
                for i in range(lo, hi)])
            if not images[0].pk:  # backends without RETURNING ids
                images = list(Image.objects.filter(sha256__in=[im.sha256 for im in images]))
            predictions, tags_of = [], {}
            for image in images:
                probs = {n: float(min(1.0, rng.random() * 2 * p)) for n, p in FREQUENCIES.items()}
                tags = [n for n in names if rng.random() < FREQUENCIES[n]]
                tags_of[image.pk] = (tags, probs)
                predictions.append(Prediction(image=image, model=model, probabilities=probs,
                                              tags=tags, confidence=image.confidence))
            Prediction.objects.bulk_create(predictions)
            by_image = {p.image_id: p for p in Prediction.objects.filter(
                image_id__in=[im.pk for im in images])}
            for image in images:
                image.prediction = by_image[image.pk]
            Image.objects.bulk_update(images, ["prediction"])
            ImageLabel.objects.bulk_create([
                ImageLabel(image_id=pk, label=labels[name], source="model",
                           probability=probs[name])
                for pk, (tags, probs) in tags_of.items() for name in tags])
            bar.update(hi - lo)


def time_queries(client, repeat: int) -> dict[str, float]:
    """Median ms per request; every answer (warm-up included) checked as a user's page."""
    out = {}
    for name, url in QUERIES.items():
        checked(client.get(url), url)  # warm-up
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            response = client.get(url)
            samples.append((time.perf_counter() - start) * 1000)
            checked(response, url)
        out[name] = statistics.median(samples)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run for the test suite: --n 60 --baseline 30 --repeat 1")
    args = parser.parse_args()
    if args.smoke:
        args.n, args.baseline, args.repeat = 60, 30, 1
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        setup_django(Path(tmp))
        from django.db import connection

        create_database()
        client = logged_in_client()
        rng = np.random.default_rng(0)
        fill(args.baseline, 0, rng)
        base = time_queries(client, args.repeat)
        fill(args.n, args.baseline, rng)
        big = time_queries(client, args.repeat)
        print(f"\ndatabase: {connection.vendor}; median of {args.repeat} full requests (ms), "
              "logged in; every answer 200 with a page")
        print(f"{'request':44s} {args.baseline:>9,} {args.n:>9,}   ratio")
        for name in QUERIES:
            print(f"{name:44s} {base[name]:9.1f} {big[name]:9.1f}   {big[name] / base[name]:5.2f}x")


if __name__ == "__main__":
    main()
