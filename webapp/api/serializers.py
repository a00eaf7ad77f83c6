from __future__ import annotations

from urllib.parse import urlencode

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from webapp.models import (
    Batch,
    BatchItem,
    Image,
    ImageLabel,
    Label,
    ModelVersion,
    Scene,
    TrainingJob,
)
from webapp.services import access
from webapp.services.activation import retag_status
from webapp.services.batches import seconds_left
from webapp.services.scenes import with_progress


class BatchImageSerializer(serializers.ModelSerializer):
    """One file of a batch, in the shape batch clients poll."""

    id = serializers.IntegerField(source="image_id", allow_null=True,
                                  help_text="image id; null when the file was not stored")
    tags = serializers.SerializerMethodField()
    probabilities = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()

    class Meta:
        model = BatchItem
        fields = ["id", "position", "filename", "status", "reused", "tags", "probabilities",
                  "error"]

    def _prediction(self, item: BatchItem):
        if item.status != BatchItem.Status.DONE or item.image is None:
            return None
        return item.image.prediction

    def get_tags(self, item: BatchItem) -> list[str]:
        prediction = self._prediction(item)
        return list(prediction.tags) if prediction else []

    def get_probabilities(self, item: BatchItem) -> dict[str, float]:
        prediction = self._prediction(item)
        return dict(prediction.probabilities) if prediction else {}

    def get_error(self, item: BatchItem) -> str | None:
        return item.error or None


class SceneSerializer(serializers.ModelSerializer):
    """A scene and its tiling progress. ``tiles`` counts the tiles to tag (all-nodata
    tiles excluded, see ``tiles_nodata``), ``tiles_done`` those tagged."""

    crs = serializers.IntegerField(source="epsg", allow_null=True, read_only=True,
                                   help_text="EPSG code of the scene's CRS; null without "
                                             "one (or for a CRS with no EPSG code: crs_wkt)")
    tiles_done = serializers.IntegerField(read_only=True)
    tiles_failed = serializers.IntegerField(read_only=True)
    georeferenced = serializers.BooleanField(read_only=True)
    page = serializers.SerializerMethodField()
    preview = serializers.SerializerMethodField()
    tiles_geojson = serializers.SerializerMethodField()

    class Meta:
        model = Scene
        fields = ["id", "batch", "filename", "width", "height", "bands", "dtype", "rgb_bands",
                  "crs", "crs_wkt", "georeferenced", "transform", "bounds", "footprint",
                  "tile_size", "overlap", "edge", "rows", "cols", "rows_tiled", "tiles",
                  "tiles_done", "tiles_failed", "tiles_nodata", "status", "error",
                  "created_at", "tiled_at", "page", "preview", "tiles_geojson"]

    def get_page(self, scene: Scene) -> str:
        return reverse("scene-detail-page", args=[scene.pk])

    def get_preview(self, scene: Scene) -> str | None:
        return reverse("scene-preview", args=[scene.pk]) if scene.preview else None

    def get_tiles_geojson(self, scene: Scene) -> str:
        return reverse("scene-tiles-geojson", args=[scene.pk])


class BatchSceneSerializer(serializers.ModelSerializer):
    """A scene in its batch's answer: enough to show tiling progress."""

    tiles_done = serializers.IntegerField(read_only=True)

    class Meta:
        model = Scene
        fields = ["id", "filename", "status", "rows", "rows_tiled", "tiles", "tiles_done",
                  "tiles_nodata", "error"]


BATCH_ITEMS_PAGE = 500  # items in one batch answer; the rest through ``images_next``


class BatchSerializer(serializers.ModelSerializer):
    """A batch with its counts, its scenes and one page of its items (``images``, in
    upload order, at most BATCH_ITEMS_PAGE; ``images_next`` is the URL of the next page
    or null). Context: ``with_images`` (False: counts only), ``images_after`` (a
    position: the page starts after it), ``images_status`` (only items in that state)."""

    remaining = serializers.IntegerField(read_only=True)
    eta_seconds = serializers.SerializerMethodField(
        help_text="time left at the rate measured since the batch started (null before "
                  "a first result and once done)")
    images = serializers.SerializerMethodField()
    images_next = serializers.SerializerMethodField()
    scenes = serializers.SerializerMethodField()
    owner = serializers.CharField(source="owner.username", read_only=True)

    class Meta:
        model = Batch
        fields = ["id", "owner", "status", "submitted", "total", "done", "failed", "remaining",
                  "eta_seconds", "reused", "created_at", "started_at", "finished_at",
                  "scenes", "images", "images_next"]

    def get_eta_seconds(self, batch: Batch) -> float | None:
        return seconds_left(batch)

    def _page(self, batch: Batch) -> tuple[list, int | None]:
        """(this page's items, the position the next page starts after, or None)."""
        cache = self.__dict__.setdefault("_pages", {})
        if batch.pk not in cache:
            items = batch.items.select_related("image__prediction").order_by("position")
            after = self.context.get("images_after")
            if after is not None:
                items = items.filter(position__gt=after)
            if self.context.get("images_status"):
                items = items.filter(status=self.context["images_status"])
            page = list(items[:BATCH_ITEMS_PAGE + 1])
            more = len(page) > BATCH_ITEMS_PAGE
            page = page[:BATCH_ITEMS_PAGE]
            cache[batch.pk] = (page, page[-1].position if more else None)
        return cache[batch.pk]

    def get_images(self, batch: Batch) -> list[dict]:
        if not self.context.get("with_images", True):
            return []
        return BatchImageSerializer(self._page(batch)[0], many=True).data

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_images_next(self, batch: Batch) -> str | None:
        if not self.context.get("with_images", True):
            return None
        after = self._page(batch)[1]
        if after is None:
            return None
        query = {"images_after": after}
        if self.context.get("images_status"):
            query["images_status"] = self.context["images_status"]
        url = reverse("batch-detail", args=[batch.pk]) + "?" + urlencode(query)
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request is not None else url

    def get_scenes(self, batch: Batch) -> list[dict]:
        return BatchSceneSerializer(with_progress(batch.scenes.order_by("id")), many=True).data


class StrictBooleanField(serializers.BooleanField):
    """true / false only (what the schema's boolean allows), not also 1, yes, on ..."""

    TRUE_VALUES = {True, "true", "True"}
    FALSE_VALUES = {False, "false", "False"}


class BatchCreateSerializer(serializers.Serializer):
    files = serializers.ListField(child=serializers.FileField(allow_empty_file=True),
                                  required=False, default=list)
    submit = StrictBooleanField(
        default=True, help_text="false: keep the batch open for more POSTs to .../files/")


class FilesSerializer(serializers.Serializer):
    files = serializers.ListField(child=serializers.FileField(allow_empty_file=True),
                                  allow_empty=False)


class ImageLabelSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="label.name")
    added_by = serializers.CharField(source="added_by.username", allow_null=True, default=None)

    class Meta:
        model = ImageLabel
        fields = ["name", "source", "probability", "added_by", "added_at", "reviewed"]


class ImageSerializer(serializers.ModelSerializer):
    tags = serializers.SerializerMethodField(help_text="current (curated) labels")
    labels = ImageLabelSerializer(many=True, read_only=True)
    predicted_tags = serializers.SerializerMethodField()
    probabilities = serializers.SerializerMethodField()
    model = serializers.SerializerMethodField()
    reviewed_by = serializers.CharField(source="reviewed_by.username", allow_null=True,
                                        default=None)
    urls = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = ["id", "name", "original_name", "format", "width", "height", "size_bytes",
                  "status", "error", "created_at", "tags", "labels", "predicted_tags",
                  "probabilities", "confidence", "novelty", "unusual", "model", "reviewed",
                  "reviewed_by", "reviewed_at", "split", "urls"]

    def to_representation(self, image: Image) -> dict:
        data = super().to_representation(image)
        request = self.context.get("request")
        if not access.can_see_people(request.user if request else None):
            data["reviewed_by"] = None  # public reads (PUBLIC_READS) name no one
            for label in data["labels"]:
                label["added_by"] = None
        return data

    def get_tags(self, image: Image) -> list[str]:
        return sorted(il.label.name for il in image.labels.all())

    def get_predicted_tags(self, image: Image) -> list[str]:
        return list(image.prediction.tags) if image.prediction else []

    def get_probabilities(self, image: Image) -> dict[str, float]:
        return dict(image.prediction.probabilities) if image.prediction else {}

    def get_model(self, image: Image) -> str | None:
        return image.prediction.model.version if image.prediction else None

    def get_urls(self, image: Image) -> dict[str, str]:
        templates = self._url_templates()
        mark, pk = str(_URL_MARK), str(image.pk)
        kinds = ("page", "original", "display", "dehazed") if image.display else \
            ("page", "original")
        return {kind: templates[kind].replace(mark, pk) for kind in kinds}

    def _url_templates(self) -> dict[str, str]:
        """The image URLs with a marker for the id, resolved once per serializer (a
        page of 200 images resolved 800 URLs: ~30 ms)."""
        templates = getattr(self, "_templates", None)
        if templates is None:
            request = self.context.get("request")

            def url(name: str, **kwargs) -> str:
                path = reverse(name, kwargs=kwargs)
                return request.build_absolute_uri(path) if request else path

            templates = self._templates = {
                "page": url("image-detail-page", pk=_URL_MARK),
                **{kind: url("image-file", pk=_URL_MARK, kind=kind)
                   for kind in ("original", "display", "dehazed")}}
        return templates


#: an id in no URL but a template's (ImageSerializer.get_urls), replaced by the real one
_URL_MARK = 918_273_645_546_372_819


class ImageUpdateSerializer(serializers.Serializer):
    tags = serializers.ListField(child=serializers.CharField(max_length=64),
                                 help_text="the image's labels after the edit")
    split = serializers.ChoiceField(
        choices=Image.Split.choices, required=False,
        help_text="move the image to the train or the evaluation set (needs move_split)")


class LabelSerializer(serializers.ModelSerializer):
    """A label, with how far it is from being trainable (context: ``readiness``)."""

    images = serializers.IntegerField(
        read_only=True, help_text="images carrying the label: exact up to 10,000, an "
                                  "estimate beyond (images_exact false)")
    images_exact = serializers.BooleanField(read_only=True,
                                            help_text="whether images is an exact count")
    reviewed_train = serializers.IntegerField(
        read_only=True, help_text="reviewed positives in the train set")
    reviewed_evaluation = serializers.IntegerField(
        read_only=True, help_text="reviewed positives in the evaluation set (never trained on)")
    known = serializers.SerializerMethodField(help_text="the active model predicts it")
    missing = serializers.SerializerMethodField(
        help_text="reviewed train positives still needed before a training takes it")

    class Meta:
        model = Label
        fields = ["id", "name", "display_name", "description", "active", "images",
                  "images_exact", "reviewed_train", "reviewed_evaluation", "known", "missing"]
        read_only_fields = ["active"]

    def get_known(self, label: Label) -> bool:
        return label.name in self.context["readiness"].known

    def get_missing(self, label: Label) -> int:
        return self.context["readiness"].missing(getattr(label, "reviewed_train", 0))


class LabelCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64, help_text="lower-case letters, digits, _ and -")
    display_name = serializers.CharField(max_length=80, required=False, allow_blank=True,
                                         default="", help_text="what people read")
    description = serializers.CharField(required=False, allow_blank=True, default="")


class RetagSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField(help_text="queued, running, done, failed, cancelled")
    done = serializers.IntegerField(help_text="images re-tagged so far")
    total = serializers.IntegerField(help_text="unreviewed images when it started")
    predicted = serializers.IntegerField(help_text="new predictions (a model's earlier "
                                                   "predictions are re-used)")
    failed = serializers.IntegerField()
    error = serializers.CharField()


class ModelVersionSerializer(serializers.ModelSerializer):
    state = serializers.CharField(read_only=True,
                                  help_text="active; candidate (never activated); retired")
    retag = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = ["id", "version", "name", "state", "labels", "metrics", "card", "is_active",
                  "activated_at", "created_at", "retag"]

    @extend_schema_field(RetagSerializer(allow_null=True))
    def get_retag(self, model: ModelVersion) -> dict | None:
        return retag_status(model)


class ActivateSerializer(serializers.Serializer):
    retag = serializers.BooleanField(default=True, help_text="re-tag every unreviewed image "
                                                             "with it, in the background")


class TrainingCreateSerializer(serializers.Serializer):
    base = serializers.RegexField(r"^(active|[1-9][0-9]{0,17})$", default="active",
                                  help_text="'active' or a model id: whose networks to "
                                            "fine-tune")
    labels = serializers.ListField(child=serializers.CharField(max_length=64), required=False,
                                   allow_empty=True, max_length=500,
                                   help_text="default: every active label with enough "
                                             "reviewed positives in the train set")
    epochs = serializers.IntegerField(required=False, min_value=1, max_value=1000,
                                      help_text="epochs budget per network")
    reviewed_only = serializers.BooleanField(default=True,
                                             help_text="learn from reviewed images only")


class TrainingHistorySerializer(serializers.Serializer):
    network = serializers.CharField()
    epoch = serializers.IntegerField()
    train_loss = serializers.FloatField()
    val_f2 = serializers.FloatField()
    seconds = serializers.FloatField()


class TrainingSerializer(serializers.ModelSerializer):
    model = serializers.PrimaryKeyRelatedField(source="result", read_only=True,
                                               help_text="the candidate's id once done")
    history = serializers.ListField(child=serializers.DictField(), read_only=True,
                                    help_text="per network and epoch: train_loss, val_f2, ...")

    class Meta:
        model = TrainingJob
        fields = ["id", "status", "phase", "progress", "epoch", "epochs", "eta_seconds",
                  "history", "model", "error", "base", "labels", "options", "images",
                  "cancel_requested", "created_at", "started_at", "finished_at"]
        read_only_fields = fields


class CompareF2Serializer(serializers.Serializer):
    candidate = serializers.FloatField(allow_null=True)
    active = serializers.FloatField(allow_null=True, help_text="the model compared against")
    difference = serializers.FloatField(allow_null=True)
    interval = serializers.ListField(child=serializers.FloatField(),
                                     help_text="paired bootstrap 95% interval")


class CompareLabelSerializer(serializers.Serializer):
    label = serializers.CharField()
    support = serializers.IntegerField()
    f2_candidate = serializers.FloatField(allow_null=True, help_text="null: unknown to it")
    f2_active = serializers.FloatField(allow_null=True)
    precision_candidate = serializers.FloatField(allow_null=True)
    precision_active = serializers.FloatField(allow_null=True)
    recall_candidate = serializers.FloatField(allow_null=True)
    recall_active = serializers.FloatField(allow_null=True)


class CompareSerializer(serializers.Serializer):
    candidate = serializers.IntegerField()
    against = serializers.IntegerField()
    evaluation_images = serializers.IntegerField()
    missing = serializers.DictField(child=serializers.IntegerField())
    f2 = CompareF2Serializer()
    labels = CompareLabelSerializer(many=True)
    pr_curves = serializers.DictField(child=serializers.ListField())
    disagreements = serializers.ListField(child=serializers.DictField())


class MatchSerializer(ImageSerializer):
    """An image found by search, with its Hamming distance to the query."""

    distance = serializers.IntegerField()
    strength = serializers.ChoiceField(
        ["strong", "weaker"], help_text="text search: within the strong or the weaker "
                                        "relevance cut-off chosen on validation (results "
                                        "beyond it are not returned); image search: strong")

    class Meta(ImageSerializer.Meta):
        fields = ["distance", "strength", *ImageSerializer.Meta.fields]


class MatchPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = MatchSerializer(many=True)


class TextSearchPageSerializer(MatchPageSerializer):
    query = serializers.CharField()
    ignored_words = serializers.ListField(child=serializers.CharField())


class NearTextSerializer(serializers.Serializer):
    text = serializers.CharField()
    distance = serializers.IntegerField()


class DescriptionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    texts = NearTextSerializer(many=True)
