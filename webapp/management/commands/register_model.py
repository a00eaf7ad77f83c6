"""Register a trained classifier directory as a model version (optionally active)."""

from django.core.management.base import BaseCommand, CommandError

from webapp.services.model_registry import register_model


class Command(BaseCommand):
    help = "Register a model directory from `python -m classifier train` ('default' = shipped)."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--activate", action="store_true",
                            help="tag new uploads with it from now on")

    def handle(self, path, activate, **options):
        try:
            model = register_model(path, activate=activate)
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{model.version} registered{' and active' if model.is_active else ''}")
