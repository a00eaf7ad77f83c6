"""Data model: images stored once, batches of uploads, predictions, curated labels.

An image's *labels* (ImageLabel) are what the gallery shows and filters on. The model's
tags become labels with source "model"; a person's edits become labels with source
"person". A newer prediction replaces only model labels nobody reviewed.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

LABEL_NAME = RegexValidator(
    r"^[a-z0-9][a-z0-9_\-]{0,63}$",
    "Label names are lower-case letters, digits, '_' and '-' (Planet style), up to 64.",
)


class Label(models.Model):
    """The label vocabulary; inactive labels stay on old images but cannot be added."""

    name = models.CharField(max_length=64, unique=True, validators=[LABEL_NAME])
    description = models.TextField(blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelVersion(models.Model):
    """A trained classifier directory; exactly one is active and tags new uploads."""

    version = models.CharField(max_length=128, unique=True)
    name = models.CharField(max_length=128)
    path = models.CharField(max_length=500, help_text="model directory, or 'default'")
    labels = models.JSONField(default=list)
    metrics = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True),
                                    name="one_active_model"),
        ]

    def __str__(self) -> str:
        return self.version + (" (active)" if self.is_active else "")


class Image(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "waiting for a worker"
        READY = "ready", "predicted"
        BROKEN = "broken", "cannot be decoded"

    sha256 = models.CharField(max_length=64, unique=True)
    file = models.FileField(upload_to="originals/", max_length=255)
    original_name = models.CharField(max_length=255)
    format = models.CharField(max_length=16)
    size_bytes = models.PositiveBigIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    display = models.FileField(upload_to="display/", max_length=255, blank=True)
    dehazed = models.FileField(upload_to="dehazed/", max_length=255, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING,
                              db_index=True)
    error = models.TextField(blank=True)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    prediction = models.ForeignKey("Prediction", null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+",
                                   help_text="latest prediction of the active model")
    confidence = models.FloatField(null=True, blank=True, db_index=True,
                                   help_text="0: some label sits on its threshold; 1: sure")
    reviewed = models.BooleanField(default=False, db_index=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("curate_image", "Can edit an image's labels and review it")]
        indexes = [models.Index(fields=["status", "-created_at", "-id"], name="gallery_order")]

    def __str__(self) -> str:
        return self.name

    @property
    def name(self) -> str:
        """The name used in exports: unique, stable, safe as a file name."""
        return f"img_{self.pk}"

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


class ReviewQueue(Image):
    """The admin's review queue: unreviewed images, least certain first."""

    class Meta:
        proxy = True
        verbose_name = "review queue item"
        verbose_name_plural = "review queue (least certain first)"


class Prediction(models.Model):
    """One model version's output for one image; never rewritten."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="predictions")
    model = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="predictions")
    probabilities = models.JSONField()
    tags = models.JSONField()
    confidence = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["image", "model"], name="one_prediction_per_model"),
        ]

    def __str__(self) -> str:
        return f"{self.image} by {self.model.version}"


class ImageLabel(models.Model):
    """A label on an image, with where it came from and whether a person checked it."""

    class Source(models.TextChoices):
        MODEL = "model", "model"
        PERSON = "person", "person"

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="labels")
    label = models.ForeignKey(Label, on_delete=models.PROTECT, related_name="image_labels")
    source = models.CharField(max_length=6, choices=Source.choices)
    probability = models.FloatField(null=True, blank=True,
                                    help_text="the model's score when the model added it")
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                 on_delete=models.SET_NULL, related_name="+")
    added_at = models.DateTimeField(auto_now_add=True)
    reviewed = models.BooleanField(default=False)

    class Meta:
        ordering = ["label__name"]
        constraints = [
            models.UniqueConstraint(fields=["image", "label"], name="one_label_per_image"),
        ]
        indexes = [models.Index(fields=["label", "image"], name="label_image")]

    def __str__(self) -> str:
        return f"{self.label.name} ({self.source})"


class Batch(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="batches")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED,
                              db_index=True)
    submitted = models.BooleanField(default=False,
                                    help_text="all files arrived and prediction was requested")
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    reused = models.PositiveIntegerField(default=0,
                                         help_text="images already known: not predicted again")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Self-healing queue (webapp.services.recognition / healing): the worker running the
    # batch holds a lease (``worker``) that it renews (``heartbeat_at``) per chunk; a
    # batch with neither a fresh heartbeat nor a recent message is sent again.
    queued_at = models.DateTimeField(null=True, blank=True,
                                     help_text="when a worker message was last sent")
    heartbeat_at = models.DateTimeField(null=True, blank=True,
                                        help_text="last sign of life of its worker")
    worker = models.CharField(max_length=200, blank=True,
                              help_text="lease of the worker running it (empty: none)")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "batches"
        permissions = [("view_all_batches",
                        "Can see every user's batches, their files and failure reasons")]
        indexes = [models.Index(fields=["submitted", "status"], name="batch_unfinished")]

    def __str__(self) -> str:
        return f"batch {self.pk}"

    @property
    def remaining(self) -> int:
        return max(self.total - self.done - self.failed, 0)


class BatchItem(models.Model):
    """One uploaded file of a batch: its outcome, and its error when it failed."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField()
    filename = models.CharField(max_length=255)
    image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="batch_items")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    reused = models.BooleanField(default=False, help_text="image was known: no new prediction")
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="times a worker started on it (> 0 while queued: a worker "
                             "stopped during it)")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["batch", "position"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "position"], name="one_item_per_position"),
        ]
        indexes = [
            models.Index(fields=["batch", "status"], name="batch_status"),
            models.Index(fields=["image", "batch"], name="image_batch"),
        ]

    def __str__(self) -> str:
        return f"{self.filename} ({self.status})"


class ImageCode(models.Model):
    """Hash codes of an image for cross-modal search (webapp.services.search).

    ``image_code``: the ImgNet code of the pixels; ``text_code``: the TxtNet code of the
    text of its current labels. Codes of up to 64 bits, stored as signed 64-bit integers.
    """

    image = models.OneToOneField(Image, on_delete=models.CASCADE, related_name="code")
    model = models.CharField(max_length=128, help_text="retrieval model version")
    bits = models.PositiveSmallIntegerField()
    image_code = models.BigIntegerField()
    text_code = models.BigIntegerField()
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["model", "bits"], name="code_model_bits")]

    def __str__(self) -> str:
        return f"codes of {self.image}"


class RemovedImageCode(models.Model):
    """A tombstone: search indexes kept in other processes drop this image's codes.

    Written when an ImageCode row is deleted (with its image); indexes apply these like
    any other change since their last version, and old ones are purged by the heal job.
    """

    image_id = models.BigIntegerField()
    removed_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"codes of image {self.image_id} removed"
