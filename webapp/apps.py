from django.apps import AppConfig


class WebappConfig(AppConfig):
    name = "webapp"
    verbose_name = "Satellite image tagging"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks
        from django.db.models.signals import post_delete, post_migrate

        checks.register(_settings_check)
        post_migrate.connect(_curators_group, sender=self)
        post_delete.connect(_tombstone, sender="webapp.ImageCode")


CURATOR_PERMISSIONS = [
    "curate_image", "view_image", "change_image", "view_reviewqueue", "change_reviewqueue",
    "view_imagelabel", "add_imagelabel", "change_imagelabel", "delete_imagelabel",
    "view_label", "add_label", "change_label", "view_batch", "view_prediction",
    "view_modelversion", "move_split", "add_trainingjob", "view_trainingjob",
    "view_retagjob",
]


def _settings_check(app_configs=None, **kwargs) -> list:
    """Settings a worker would otherwise trip over in the middle of a batch."""
    from django.core import checks

    from imagery.partial import VIEWS
    from webapp.conf import app_settings

    if app_settings.PARTIAL_TILE_VIEW not in VIEWS:
        return [checks.Error(f"PARTIAL_TILE_VIEW is {app_settings.PARTIAL_TILE_VIEW!r}",
                             hint=f"use one of {', '.join(VIEWS)}", id="webapp.E001")]
    return []


def _curators_group(sender, **kwargs) -> None:
    """A 'curators' group: add people to it (and tick 'staff') to let them curate."""
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.get_or_create(name="curators")
    group.permissions.add(*Permission.objects.filter(
        content_type__app_label="webapp", codename__in=CURATOR_PERMISSIONS))


def _tombstone(sender, instance, **kwargs) -> None:
    """Search indexes kept by other processes learn of a removed code from this row
    (webapp.services.search); connected here so that every process writes it."""
    from webapp.models import RemovedImageCode
    from webapp.services.dbclock import Now

    row = RemovedImageCode.objects.create(image_id=instance.image_id)
    RemovedImageCode.objects.filter(pk=row.pk).update(removed_at=Now())  # the db's clock
