"""Create the first admin account unless one exists (used by `make run`)."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = ("Create a superuser from DJANGO_SUPERUSER_USERNAME/PASSWORD, or with a generated "
            "password printed once, when no superuser exists.")

    def handle(self, **options):
        users = get_user_model()
        if users.objects.filter(is_superuser=True).exists():
            return
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME") or "admin"
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        generated = not password
        password = password or secrets.token_urlsafe(12)
        users.objects.create_superuser(username, os.environ.get("DJANGO_SUPERUSER_EMAIL", ""),
                                       password)
        if generated:
            self.stdout.write(self.style.WARNING(
                f"Created admin account '{username}' with password: {password}\n"
                "(shown only this once; change it in the admin, or set "
                "DJANGO_SUPERUSER_USERNAME/DJANGO_SUPERUSER_PASSWORD before the first run)"))
        else:
            self.stdout.write(f"Created admin account '{username}' from the environment")
