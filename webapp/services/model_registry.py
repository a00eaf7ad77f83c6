"""Which classifier tags new uploads: ModelVersion rows backed by model directories."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from classifier import model_info
from webapp.conf import app_settings
from webapp.models import Label, ModelVersion
from webapp.services.label_words import words_for


def register_model(path: str, activate: bool = False) -> ModelVersion:
    """Record a model directory (idempotent) and add its labels to the vocabulary."""
    info = model_info(path)
    spec, version, model_dir = info.spec, info.version, info.path
    metrics = dict(spec.get("metrics", {}))
    if "per_label_test" in spec:
        metrics["per_label_test"] = spec["per_label_test"]
    with transaction.atomic():
        model, _ = ModelVersion.objects.get_or_create(
            version=version,
            defaults={"name": spec.get("name", model_dir.name), "path": str(path),
                      "labels": spec["labels"], "metrics": metrics},
        )
        for name in spec["labels"]:
            Label.objects.get_or_create(name=name, defaults=words_for(name))
        if activate:
            activate_model(model)
    return model


def register_shipped_model(path: str) -> ModelVersion:
    """Register the model the app ships with (``make run``), active when none is, or when
    the active model was read from this same directory and the directory now holds
    another version: an upgrade of the code replaced its files, so the old model can no
    longer run and every worker would refuse to start ("register it again"). Images it
    tagged keep their predictions and the version that made them."""
    model = register_model(path)
    active = ModelVersion.objects.filter(is_active=True).first()
    if active is None or (active.path == model.path and active.version != model.version):
        model = activate_model(model)
    return model


@transaction.atomic
def activate_model(model: ModelVersion) -> ModelVersion:
    """Make this model the one that tags new uploads (exactly one is active)."""
    model.refresh_from_db(fields=["is_active", "activated_at"])  # not a stale copy's flag
    if not model.is_active:
        ModelVersion.objects.filter(is_active=True).update(is_active=False)
        model.is_active, model.activated_at = True, timezone.now()
        model.save(update_fields=["is_active", "activated_at"])
    return model


def active_model() -> ModelVersion:
    """The active model; registers app_settings.CLASSIFIER_MODEL on first use."""
    model = ModelVersion.objects.filter(is_active=True).first()
    if model is not None:
        return model
    try:
        return register_model(app_settings.CLASSIFIER_MODEL, activate=True)
    except IntegrityError:  # another process activated one at the same moment
        return ModelVersion.objects.get(is_active=True)
