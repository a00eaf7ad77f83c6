"""Time request combinations of one's own on a database that bench_scale.py kept.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/webapp \\
        python bench/bench_scale.py --images 1000000 --keep > scale.jsonl
    python bench/scale_requests.py scale.jsonl [--requests 20] [--workers 4] [URL ...]

bench_scale.py times the requests issue 24 lists; reviewers also time their own filter
combinations. This starts gunicorn (gunicorn.conf.py, ``--workers`` processes, the
throttles out of the way, a Redis of its own) on the database named by the ``kept`` line
of a bench_scale.py output, logs in as ``owner-all`` and ``owner-plain`` (pages through
the login form, the API with their tokens), and sends each path (the defaults below, or
the ones given) ``--requests`` times after 2 untimed ones, one at a time. Admin pages are
asked as ``owner-all`` only. One JSON line per path and user: ``{"path", "user",
"status", "p50_ms", "p95_ms", "max_ms"}``. ``{batch}`` in a path is the kept 2,000-file
batch.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_scale as scale  # noqa: E402
from redis_server import RedisServer  # noqa: E402

PATHS = [
    "/api/images/?tags=water&reviewed=true",
    "/api/images/?tags=blow_down&reviewed=false&min_confidence=0.5",
    "/api/images/?tags=blow_down,conventional_mine&match=all",
    "/api/images/?tags=blow_down,conventional_mine,slash_burn&match=any",
    "/api/images/?unusual=true",
    "/api/images/?unusual=true&tags=blooming",
    "/api/images/?min_confidence=0.99",
    "/api/images/?reviewed=true&min_confidence=0.9",
    "/api/images/?partial=true",
    "/api/images/?batch={batch}&tags=water",
    "/api/images/?batch={batch}&tags=blow_down",
    "/api/images/?tags=primary,clear,agriculture,road,water&match=all",
    "/api/images/?tags=cloudy&unusual=false&reviewed=false",
    "/api/images/?tag=haze&min_confidence=0.2&partial=true",
    "/api/images/?tags=nonexistent",
    "/api/images/?page=100&tags=water",
    "/api/images/?page_size=200&tags=road",
    "/gallery/?tags=water&reviewed=true",
    "/gallery/?tags=blow_down,conventional_mine&match=all",
    "/gallery/?unusual=true&tags=blooming",
    "/gallery/?min_confidence=0.99",
    "/gallery/?batch={batch}&tags=blow_down",
    "/gallery/?q=river&tags=blow_down",
    "/gallery/?q=clouds&reviewed=true&unusual=true",
    "/gallery/?page=100&tags=blow_down&match=all",
    "/api/images/review/?label=water",
    "/api/images/review/?label=blow_down",
    "/admin/webapp/image/?reviewed__exact=1",
    "/admin/webapp/image/?split__exact=evaluation&unusual__exact=1",
    "/admin/webapp/image/?q=img_5",
    "/admin/webapp/batch/",
    "/admin/webapp/prediction/",
    "/admin/webapp/reviewqueue/?p=50",
    "/api/batches/",
    "/batches/",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="a bench_scale.py --keep output (JSON lines)")
    parser.add_argument("paths", nargs="*", help="paths to time (default: a built-in list)")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    kept = [json.loads(line) for line in args.output.read_text().splitlines()
            if '"name": "kept"' in line]
    if not kept:
        parser.error(f"{args.output} has no 'kept' line: run bench_scale.py with --keep")
    kept = kept[-1]
    rate = "1000000/second"
    with tempfile.TemporaryDirectory(prefix="scale-requests-") as folder:
        tmp = Path(folder)
        (tmp / "redis").mkdir()
        redis = RedisServer(tmp / "redis")
        env = {**{k: v for k, v in os.environ.items() if k != "DEBUG"},
               "DJANGO_SETTINGS_MODULE": "webapp.settings",
               "DATABASE_URL": kept["database_url"], "VAR_DIR": str(tmp / "var"),
               "MEDIA_ROOT": str(tmp / "media"),
               "SECRET_KEY": f"scale-requests-{secrets.token_hex(16)}",
               "ALLOWED_HOSTS": "127.0.0.1,localhost", "DEBUG": "0", "REDIS_URL": redis.url,
               "CELERY_QUEUE": "scale-requests", "THROTTLE_ANON": rate, "THROTTLE_USER": rate,
               "THROTTLE_UPLOADS": rate, "THROTTLE_IMAGE_SEARCH": rate,
               "THROTTLE_GALLERY_SEARCH": rate}
        server = scale.Server(env, args.workers, tmp / "gunicorn.log")
        try:
            sessions = {user: (scale.login(server.base, user, 60),
                               scale.token_session(kept["users"][user]["token"]))
                        for user in scale.USERS}
            for path in args.paths or PATHS:
                path = path.format(batch=kept["big_batch"])
                for user in scale.USERS:
                    if path.startswith("/admin") and user != "owner-all":
                        continue
                    session = sessions[user][1 if path.startswith("/api") else 0]
                    samples, status = [], None
                    for i in range(args.requests + 2):
                        begin = time.perf_counter()
                        answer = session.get(server.base + path, timeout=120)
                        if i >= 2:
                            samples.append((time.perf_counter() - begin) * 1000)
                        status = answer.status_code
                    a = np.array(samples)
                    print(json.dumps({"path": path, "user": user, "status": status,
                                      "p50_ms": round(float(np.percentile(a, 50)), 1),
                                      "p95_ms": round(float(np.percentile(a, 95)), 1),
                                      "max_ms": round(float(a.max()), 1)}), flush=True)
        finally:
            server.stop()
            redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
