"""WSGI entry point (gunicorn webapp.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

from webapp.conf import prepare_var_dir

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
prepare_var_dir()  # var/ before the settings read the secret key kept there
application = get_wsgi_application()
