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

from webapp.fields import LabelIdsField

LABEL_NAME = RegexValidator(
    r"^[a-z0-9][a-z0-9_\-]{0,63}$",
    "Label names are lower-case letters, digits, '_' and '-' (Planet style), up to 64.",
)


class Label(models.Model):
    """The label vocabulary; inactive labels stay on old images but cannot be added."""

    name = models.CharField(max_length=64, unique=True, validators=[LABEL_NAME])
    display_name = models.CharField(max_length=80, blank=True,
                                    help_text="what people read; the name stays the key")
    description = models.TextField(blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def shown(self) -> str:
        """The name people read: the display name, else the key in words."""
        return self.display_name or self.name.replace("_", " ")


class ModelVersion(models.Model):
    """A trained classifier directory; exactly one is active and tags new uploads."""

    version = models.CharField(max_length=128, unique=True)
    name = models.CharField(max_length=128)
    path = models.CharField(max_length=500, help_text="model directory, or 'default'")
    labels = models.JSONField(default=list)
    metrics = models.JSONField(default=dict, blank=True)
    card = models.JSONField(default=dict, blank=True,
                            help_text="how a trained candidate was made: labels, image "
                                      "counts, commands, settings (webapp.services.trainings)")
    is_active = models.BooleanField(default=False)
    activated_at = models.DateTimeField(null=True, blank=True,
                                        help_text="when it last became the active model")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True),
                                    name="one_active_model"),
        ]

    def __str__(self) -> str:
        return self.version + (" (active)" if self.is_active else "")

    @property
    def state(self) -> str:
        """active; candidate (never activated yet); retired (was active before)."""
        if self.is_active:
            return "active"
        return "retired" if self.activated_at else "candidate"


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
    novelty = models.FloatField(null=True, blank=True,
                                help_text="how unlike the training imagery, in units of the "
                                          "model's threshold (classifier.novelty); null: no "
                                          "detector")
    unusual = models.BooleanField(default=False, db_index=True,
                                  help_text="novelty above the model's threshold (chosen on "
                                            "held-out chips): its tags deserve doubt")
    reviewed = models.BooleanField(default=False, db_index=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    scene_only = models.BooleanField(
        default=False, help_text="known only as a tile of scenes (never uploaded as a file of "
                                 "its own): as private as its scenes (services/access.py)")

    coverage = models.FloatField(
        default=1.0, help_text="share of the pixels that hold data: below 1 for a scene's "
                               "edge tile padded with black; the gallery and search hide "
                               "images under MIN_TILE_COVERAGE unless asked")
    label_ids = LabelIdsField(
        default=list, blank=True, editable=False,
        help_text="ids of the current labels, sorted: the tag filters' indexed form "
                  "(webapp.services.label_index), kept by the curation service")
    data_window = models.JSONField(
        null=True, blank=True,
        help_text="[x, y, width, height] of the stored pixels that hold data (a scene's "
                  "partial tile); null: all of them. The model sees these pixels only, "
                  "as PARTIAL_TILE_VIEW says (imagery.partial)")

    class Split(models.TextChoices):
        TRAIN = "train", "train"
        EVALUATION = "evaluation", "evaluation"

    split = models.CharField(
        max_length=10, choices=Split.choices, default=Split.TRAIN, db_index=True,
        help_text="train: curated labels may be trained on; evaluation: never trained on, "
                  "models are compared on it (set from the content hash, "
                  "webapp.services.splits; curators may move an image)")

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("curate_image", "Can edit an image's labels and review it"),
                       ("move_split", "Can move an image between the train and evaluation "
                                      "sets")]
        indexes = [# newest first, with what the tag filters and counts read (PostgreSQL
                   # INCLUDE): a tag's page and its capped count from the index alone
                   models.Index(fields=["status", "-created_at", "-id"], name="gallery_order",
                                include=["coverage", "label_ids", "scene_only"]),
                   # the label list's reviewed positives in the evaluation set: the
                   # evaluation images' ids without a heap visit (services/labels.py)
                   models.Index(fields=["id"], condition=Q(split="evaluation"),
                                name="image_evaluation"),
                   # reviewed images (2% of a collection) newest first, with what their
                   # filters read: the gallery's and the API's reviewed=true pages and
                   # counts from the index alone (PostgreSQL; SQLite has no INCLUDE)
                   models.Index(fields=["-created_at", "-id"], condition=Q(reviewed=True),
                                include=["status", "coverage", "label_ids", "confidence",
                                         "scene_only"],
                                name="reviewed_order")]

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
    novelty = models.FloatField(null=True, blank=True)
    unusual = models.BooleanField(default=False)
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
        indexes = [models.Index(fields=["label", "image"], name="label_image"),
                   # the label list's reviewed positives, counted from the index alone
                   # (services/labels.py); a reviewed row is a reviewed positive
                   models.Index(fields=["image", "label"], condition=Q(reviewed=True),
                                name="imagelabel_reviewed")]

    def __str__(self) -> str:
        return f"{self.label.name} ({self.source})"


class Leased(models.Model):
    """The lease of a row of long work (webapp.services.leases): the worker running it
    holds ``worker`` and renews ``heartbeat_at``; a row with neither a fresh heartbeat
    nor a recent message (``queued_at``) is sent again by the heal job."""

    queued_at = models.DateTimeField(null=True, blank=True,
                                     help_text="when a worker message was last sent")
    heartbeat_at = models.DateTimeField(null=True, blank=True,
                                        help_text="last sign of life of its worker")
    worker = models.CharField(max_length=200, blank=True,
                              help_text="lease of the worker running it (empty: none)")

    class Meta:
        abstract = True


class Batch(Leased):
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


class Scene(models.Model):
    """A whole scene uploaded to a batch (a georeferenced GeoTIFF, or a large image): the
    worker cuts it into chip-size tiles (SceneTile), each an Image tagged as any other.

    Geometry is kept as the file gives it: ``transform`` (GDAL's affine, 6 numbers),
    ``crs_wkt``/``epsg``, ``bounds`` in that CRS and ``footprint`` in WGS84 (lon, lat).
    Tiling (imagery.rasters, webapp.services.tiling) is resumable: ``rows_tiled`` tile
    rows are committed.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "waiting for a worker"
        TILING = "tiling", "being cut into tiles"
        TAGGING = "tagging", "tiles being tagged"
        DONE = "done", "every tile tagged"
        FAILED = "failed", "cannot be read"

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="scenes")
    filename = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64, db_index=True)
    file = models.FileField(upload_to="originals/", max_length=255)
    driver = models.CharField(max_length=16, help_text="GDAL driver: GTiff, JPEG, PNG")
    size_bytes = models.PositiveBigIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    bands = models.PositiveSmallIntegerField()
    dtype = models.CharField(max_length=16)
    rgb_bands = models.JSONField(default=list, help_text="1-based bands shown as R, G, B")
    stretch = models.JSONField(null=True, blank=True,
                               help_text="per-band (low, high) display stretch; null: 8-bit")
    crs_wkt = models.TextField(blank=True)
    epsg = models.PositiveIntegerField(null=True, blank=True)
    transform = models.JSONField(default=list)
    bounds = models.JSONField(default=list, help_text="left, bottom, right, top in the CRS")
    footprint = models.JSONField(null=True, blank=True, help_text="WGS84 ring (lon, lat)")
    tile_size = models.PositiveIntegerField()
    overlap = models.PositiveIntegerField(default=0)
    edge = models.CharField(max_length=4, default="pad")
    rows = models.PositiveIntegerField(default=0)
    cols = models.PositiveIntegerField(default=0)
    rows_tiled = models.PositiveIntegerField(default=0)
    tiles = models.PositiveIntegerField(default=0, help_text="tiles to tag (nodata excluded)")
    tiles_nodata = models.PositiveIntegerField(default=0, help_text="all-nodata tiles skipped")
    preview = models.FileField(upload_to="previews/", max_length=255, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED,
                              db_index=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="tiling starts since the last committed tile row")
    created_at = models.DateTimeField(auto_now_add=True)
    tiled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["batch", "id"]

    def __str__(self) -> str:
        return f"scene {self.pk} ({self.filename})"

    @property
    def georeferenced(self) -> bool:
        return bool(self.crs_wkt)


class SceneTile(models.Model):
    """One tile of a scene: its grid position, pixel window, bounds, and its chip Image
    (content-hashed: identical chips share an Image) tagged through its batch item."""

    scene = models.ForeignKey(Scene, on_delete=models.CASCADE, related_name="tile_set")
    row = models.PositiveIntegerField()
    col = models.PositiveIntegerField()
    x = models.PositiveIntegerField()
    y = models.PositiveIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    coverage = models.FloatField(help_text="share of the tile's pixels that hold data")
    bounds = models.JSONField(help_text="left, bottom, right, top in the scene's CRS")
    ring = models.JSONField(null=True, blank=True, help_text="WGS84 polygon ring (lon, lat)")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="scene_tiles")
    item = models.OneToOneField(BatchItem, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="scene_tile")

    class Meta:
        ordering = ["scene", "row", "col"]
        constraints = [
            models.UniqueConstraint(fields=["scene", "row", "col"], name="one_tile_per_cell"),
        ]

    def __str__(self) -> str:
        return f"tile r{self.row} c{self.col} of scene {self.scene_id}"


class UploadReservation(models.Model):
    """Quota taken by a file that is being stored: counted with what is stored, so that
    parallel uploads of one user cannot both pass a quota (webapp.services.upload_limits).
    Deleted once the file's Image or Scene row exists; a leftover of a crashed request
    stops counting after an hour."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="+")
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="+")
    size_bytes = models.BigIntegerField(default=0)
    pixels = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)


class LongWork(Leased):
    """A kind of long work with the usual life (queued -> running -> done, failed or
    cancelled), its times, and the lease (``Leased``) a worker holds while it runs it."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    UNFINISHED = (Status.QUEUED, Status.RUNNING)

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED,
                              db_index=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class TrainingJob(LongWork):
    """A fine-tune of a model on the curated train images, ending as a candidate model
    (webapp.services.trainings); runs on the ``training`` queue."""

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    base = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+",
                             help_text="the model whose networks are fine-tuned")
    options = models.JSONField(default=dict, help_text="as asked: labels, epochs, "
                                                       "reviewed_only")
    labels = models.JSONField(default=list, help_text="the labels it learns")
    images = models.JSONField(default=dict, help_text="image counts of its data set")
    phase = models.CharField(max_length=12, blank=True,
                             help_text="exporting, training, assembling, evaluating")
    progress = models.FloatField(default=0.0)
    epoch = models.PositiveIntegerField(default=0, help_text="epochs done, all networks")
    epochs = models.PositiveIntegerField(default=0, help_text="epochs budget, all networks")
    history = models.JSONField(default=list, help_text="one row per network and epoch")
    eta_seconds = models.FloatField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    result = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="trainings", help_text="the candidate it made")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"training {self.pk} ({self.status})"


class RetagJob(LongWork):
    """Re-predicting every unreviewed image with a newly activated model, in chunks of
    images in id order (``cursor``: the last id done), on the tagging queue."""

    model = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="retags")
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    predicted = models.PositiveIntegerField(default=0,
                                            help_text="new predictions (the rest were kept)")
    failed = models.PositiveIntegerField(default=0)
    cursor = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"re-tagging with {self.model_id} ({self.status})"
