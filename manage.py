#!/usr/bin/env python
"""Django's command-line utility for the web application."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    from webapp.conf import prepare_var_dir

    prepare_var_dir()  # var/: the embedded database and secret key, before Django reads them
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
