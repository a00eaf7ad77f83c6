"""Send unfinished batches to the workers again (idempotent; e.g. after a broker loss)."""

from django.core.management.base import BaseCommand

from webapp.services.batches import do_requeue_unfinished


class Command(BaseCommand):
    help = "Queue every submitted, unfinished batch again."

    def handle(self, **options):
        ids = do_requeue_unfinished()
        self.stdout.write(f"requeued {len(ids)} batches")
