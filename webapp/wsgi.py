"""WSGI entry point (gunicorn webapp.wsgi)."""

import gc
import os

from django.core.wsgi import get_wsgi_application

from webapp.conf import prepare_var_dir

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
prepare_var_dir()  # var/ before the settings read the secret key kept there
application = get_wsgi_application()


def _settle() -> None:
    """Load what every request needs (the URLconf, and with it the views and services;
    the search model and the collection's index unless SEARCH_PRELOAD is off), then
    move the ~500,000 objects of the loaded libraries (torch among them) out of the
    garbage collector's reach: they live as long as the process, and a full collection
    walking them all paused a request for 160-300 ms every few dozen requests
    (bench/bench_scale.py)."""
    from django.urls import get_resolver

    from webapp.conf import app_settings
    from webapp.services import search

    get_resolver().url_patterns  # noqa: B018 - the import of every view is the point
    if app_settings.SEARCH_PRELOAD:
        search.preload()  # under gunicorn.conf.py's preload_app: shared by the workers
    gc.collect()
    gc.freeze()


_settle()
