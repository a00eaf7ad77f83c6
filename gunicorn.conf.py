"""gunicorn's settings for the web app (``gunicorn -c gunicorn.conf.py webapp.wsgi``; run
from the repository root gunicorn also finds this file by itself). Command-line options
override these.

``preload_app``: the master loads the app before it forks its workers, and with it the
search model and the collection's search index (webapp.wsgi, SEARCH_PRELOAD). Every
worker then shares those pages with the others instead of loading its own copy on its
first search: at 1,000,000 images the cold start of a fresh worker's first search and
its own memory (bench/bench_scale.py, docs/benchmarks.md) rather than seconds and
~600 MB per process.
"""

import os

preload_app = True
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
timeout = 120
graceful_timeout = 30
