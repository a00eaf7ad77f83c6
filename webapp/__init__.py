"""The Django project and app: uploads, gallery, curation, REST API, Celery tasks."""

from webapp.celery import app as celery_app

__all__ = ["celery_app"]
