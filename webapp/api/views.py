"""REST endpoints: thin views over webapp.services."""

from __future__ import annotations

from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from webapp.api import queries
from webapp.api.pagination import KeysetPagination
from webapp.api.permissions import CanCurate, ReadAccess
from webapp.api.search import matches_response, parse_k, unavailable
from webapp.api.serializers import (
    ActivateSerializer,
    BatchCreateSerializer,
    BatchSerializer,
    CompareSerializer,
    DescriptionSerializer,
    FilesSerializer,
    ImageSerializer,
    ImageUpdateSerializer,
    LabelCreateSerializer,
    LabelSerializer,
    MatchPageSerializer,
    ModelVersionSerializer,
    SceneSerializer,
    TrainingCreateSerializer,
    TrainingSerializer,
)
from webapp.api.throttles import ScopedThrottle
from webapp.models import Batch, BatchItem, Label, ModelVersion, Scene, TrainingJob
from webapp.services import (
    access,
    activation,
    batches,
    comparison,
    curation,
    export,
    ingest,
    labels,
    review_order,
    scenes,
    search,
    splits,
    trainings,
)
from webapp.services.gallery import ImageFilter, TooManyTags, gallery_queryset, parse_id
from webapp.services.model_registry import active_model


class CSVRenderer(BaseRenderer):
    """Negotiation only: the export views stream CSV; their errors are JSON."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return JSONRenderer().render(data)


def _csv_response(rows, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(export.csv_lines(rows), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def check_format(request) -> None:
    """``?format=`` names one of the view's renderers (the schema's enum), or is absent:
    an empty or unknown value is refused (DRF would ignore an empty one)."""
    value = request.query_params.get("format")
    known = [renderer.format for renderer in request.parser_context["view"].get_renderers()]
    if value is not None and value not in known:
        raise ValidationError({"format": [f"format must be one of {', '.join(known)}"]})


def _errors_as_json(request, response, action: str, file_actions: set[str]) -> None:
    """The file views answer with bytes; whatever ``?format=`` or Accept asked for,
    their errors are JSON, as the schema documents every error."""
    if isinstance(response, Response) and action in file_actions:
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = JSONRenderer.media_type


EXPORT_DOC = ("CSV, one row per item: " + ", ".join(export.RESULT_COLUMNS) + ". tags: the "
              "image's current labels; probabilities: label:probability pairs of the active "
              "model's prediction, highest first; scene, row, col: a scene tile's position.")


class BatchViewSet(mixins.CreateModelMixin, mixins.RetrieveModelMixin,
                   mixins.ListModelMixin, viewsets.GenericViewSet):
    """Upload batches. Owners see their batches (and holders of the view_all_batches
    permission see all); only the owner adds files or submits."""

    serializer_class = BatchSerializer
    permission_classes = [permissions.IsAuthenticated]
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return Batch.objects.none()
        return access.visible_batches(self.request.user)

    def owned_batch(self) -> Batch:
        batch = self.get_object()
        if not access.owns(self.request.user, batch):
            raise PermissionDenied("only the batch's owner adds files to it or submits it")
        return batch

    def get_throttles(self):
        if self.action in ("create", "files"):
            self.throttle_scope = "uploads"
            return [*super().get_throttles(), ScopedThrottle()]
        return super().get_throttles()

    def get_serializer_context(self):
        params = self.request.query_params
        counts_only = params.get("fields") == "counts"
        status_filter = params.get("images_status")
        return {**super().get_serializer_context(),
                "with_images": self.action != "list" and not counts_only,
                "images_after": _int_or_none(params.get("images_after")),
                "images_status": status_filter if status_filter in BatchItem.Status.values
                else None}

    @extend_schema(parameters=[queries.BatchQuery])
    def retrieve(self, request, *args, **kwargs):
        """One batch: counts, scenes and a page of its items (``images_next`` pages on)."""
        queries.check(queries.BatchQuery, request)
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(request={"multipart/form-data": BatchCreateSerializer},
                   responses={202: BatchSerializer})
    def create(self, request, *args, **kwargs):
        """Upload one or more `files`; predicted asynchronously (202). Poll the batch."""
        form = BatchCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        files = request.FILES.getlist("files")
        submit = form.validated_data["submit"]
        try:
            batches.check_create(len(files), submit)
        except batches.BatchRefused as exc:
            return _refused(exc)
        batch = batches.do_create_batch(request.user)
        if files:
            ingest.add_files(batch, files)
        if submit:
            batch = batches.do_submit_batch(batch)
        return Response(self.get_serializer(batch).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request={"multipart/form-data": FilesSerializer},
                   responses={202: BatchSerializer})
    @action(detail=True, methods=["post"], parser_classes=[MultiPartParser])
    def files(self, request, pk=None):
        """Add files to a batch created with submit=false (one request per file gives
        per-file upload progress)."""
        batch = self.owned_batch()
        try:
            items = ingest.add_files(batch, request.FILES.getlist("files"))
        except batches.BatchRefused as exc:
            return _refused(exc)
        data = self.get_serializer(batch, context={**self.get_serializer_context(),
                                                   "with_images": False}).data
        data["added"] = [_added(entry) for entry in items]
        return Response(data, status=status.HTTP_202_ACCEPTED)

    def finalize_response(self, request, response, *args, **kwargs):
        _errors_as_json(request, response, self.action, {"export"})
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR}, description=EXPORT_DOC)
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, CSVRenderer])
    def export(self, request, pk=None):
        """The batch's results as CSV (streamed), items in upload order."""
        check_format(request)
        batch = self.get_object()
        return _csv_response(export.batch_result_rows(batch), f"batch_{batch.pk}_results.csv")

    @extend_schema(request=None, responses={202: BatchSerializer})
    @action(detail=True, methods=["post"])
    def submit(self, request, pk=None):
        """All files are in: start predicting (idempotent)."""
        batch = batches.do_submit_batch(self.owned_batch())
        return Response(self.get_serializer(batch).data, status=status.HTTP_202_ACCEPTED)


def _refused(exc: batches.BatchRefused) -> Response:
    return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT if exc.conflict
                    else status.HTTP_400_BAD_REQUEST)


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _added(entry) -> dict:
    """One uploaded file in a files/ answer: an item, or a scene to be cut into tiles."""
    if isinstance(entry, Scene):
        return {"position": None, "filename": entry.filename, "status": "scene",
                "scene": entry.pk, "error": None}
    return {"position": entry.position, "filename": entry.filename, "status": entry.status,
            "error": entry.error or None}


class ImageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin,
                   mixins.UpdateModelMixin, viewsets.GenericViewSet):
    """Tagged images with the gallery's filters; PATCH `tags` to curate."""

    serializer_class = ImageSerializer
    permission_classes = [ReadAccess, CanCurate]
    pagination_class = KeysetPagination
    http_method_names = ["get", "patch", "head", "options"]

    def get_queryset(self):
        try:
            image_filter = ImageFilter.from_params(self.request.query_params)
        except TooManyTags as exc:
            raise ValidationError({"tags": [str(exc)]}) from None
        if self.action not in ("list", "export"):
            image_filter = ImageFilter(include_pending=True, include_partial=True)
        elif image_filter.batch and not access.visible_batches(self.request.user).filter(
                pk=image_filter.batch).exists():
            image_filter.batch = 0  # someone else's batch: its images are not listed
        return gallery_queryset(image_filter, self.request.user)

    def get_object(self):
        image = super().get_object()
        if not access.can_see_image(self.request.user, image):
            raise NotFound("no such image")
        return image

    @extend_schema(parameters=[queries.ImageQuery])
    def list(self, request, *args, **kwargs):
        queries.check(queries.ImageQuery, request)
        return super().list(request, *args, **kwargs)

    def finalize_response(self, request, response, *args, **kwargs):
        _errors_as_json(request, response, self.action, {"export"})
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(parameters=[queries.ImageQuery], responses={(200, "text/csv"):
                   OpenApiTypes.STR}, description=EXPORT_DOC.replace("per item", "per image"))
    @action(detail=False, methods=["get"], renderer_classes=[JSONRenderer, CSVRenderer])
    def export(self, request):
        """The images the same filters list, as CSV (streamed), newest first."""
        check_format(request)
        queries.check(queries.ImageQuery, request)
        return _csv_response(export.image_result_rows(self.get_queryset()), "images.csv")

    @extend_schema(request=ImageUpdateSerializer, responses=ImageSerializer)
    def partial_update(self, request, *args, **kwargs):
        image = self.get_object()
        form = ImageUpdateSerializer(data=request.data, partial=True)
        form.is_valid(raise_exception=True)
        changes = form.validated_data
        if "split" in changes:
            try:
                splits.check_move(request.user, changes["split"])
            except splits.SplitRefused as exc:
                return Response({"split": [str(exc)]}, status=status.HTTP_403_FORBIDDEN
                                if exc.forbidden else status.HTTP_400_BAD_REQUEST)
        if "tags" in changes:
            try:
                curation.set_labels(image, changes["tags"], request.user)
            except curation.UnknownLabels as exc:
                return Response({"tags": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        if "split" in changes:
            splits.do_move(image, changes["split"], request.user)
        image = get_object_or_404(self.get_queryset(), pk=image.pk)
        return Response(self.get_serializer(image).data)


    @extend_schema(parameters=[queries.ReviewQuery], responses=ImageSerializer(many=True))
    @action(detail=False, methods=["get"], pagination_class=None)
    def review(self, request):
        """The next unreviewed images to review: ``informative`` (default: uncertainty
        mixed with diversity over the search codes, so a few reviews cover different
        kinds of images) or ``uncertain`` (least certain first); ``label``: images
        likely to carry that label (by the model, or by text search for a label it does
        not know yet)."""
        params = queries.check(queries.ReviewQuery, request)
        try:
            images = review_order.review_queue(request.user, params.get("order", "informative"),
                                               params.get("label"), params.get("limit", 50))
        except review_order.ReviewOrderRefused as exc:
            raise ValidationError({"label": [str(exc)]}) from None
        return Response(self.get_serializer(images, many=True).data)

    @extend_schema(parameters=[queries.NearestQuery], responses=MatchPageSerializer)
    @action(detail=True, methods=["get"])
    def similar(self, request, pk=None):
        """Images nearest to this one in Hamming distance (image -> image)."""
        queries.check(queries.NearestQuery, request)
        image = self.get_object()
        if not search.available():
            return unavailable()
        k = parse_k(request.query_params.get("k"))
        return matches_response(self, request, search.similar_images(image, k))

    @extend_schema(parameters=[queries.DescribeQuery], responses=DescriptionSerializer)
    @action(detail=True, methods=["get"])
    def describe(self, request, pk=None):
        """The texts nearest to this image (image -> text), with Hamming distances."""
        queries.check(queries.DescribeQuery, request)
        image = self.get_object()
        if not search.available():
            return unavailable()
        found = search.describe(image, min(parse_k(request.query_params.get("k"), 5), 50))
        return Response({"id": image.pk, "texts": [{"text": d.text, "distance": d.distance}
                                                   for d in found]})


class GeoJSONRenderer(JSONRenderer):
    media_type = "application/geo+json"
    format = "geojson"


class GeoTIFFRenderer(BaseRenderer):
    """Negotiation only: the raster view answers with bytes; errors are JSON."""

    media_type = "image/tiff"
    format = "tif"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return data if isinstance(data, bytes) else JSONRenderer().render(data)


FILE_ACTIONS = {"tiles_geojson", "probabilities"}


class SceneViewSet(viewsets.ReadOnlyModelViewSet):
    """Whole scenes (GeoTIFFs, large images) cut into tiles; visible as their batches
    are. ``?batch=<id>`` lists one batch's scenes."""

    serializer_class = SceneSerializer
    permission_classes = [permissions.IsAuthenticated]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Scene.objects.none()
        found = scenes.with_progress(scenes.visible_scenes(self.request.user)).order_by("id")
        batch = self.request.query_params.get("batch")
        if self.action == "list" and batch:
            found = found.filter(batch_id=int(batch))
        return found

    def finalize_response(self, request, response, *args, **kwargs):
        _errors_as_json(request, response, self.action, FILE_ACTIONS)
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(parameters=[queries.SceneQuery])
    def list(self, request, *args, **kwargs):
        queries.check(queries.SceneQuery, request)
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={(200, "application/geo+json"): OpenApiTypes.OBJECT},
                   description="One Polygon per tile in WGS84 (lon, lat; null geometry for "
                               "a scene without a CRS). Properties: image, row, col (from "
                               "the top-left tile, 0, 0), tags, probabilities, labels, "
                               "status, coverage, bounds (scene CRS), pixels (x, y, w, h).")
    def tiles_geojson(self, request, pk=None):
        check_format(request)
        scene = self.get_object()
        response = HttpResponse(scenes.tiles_geojson(scene),
                                content_type="application/geo+json")
        response["Content-Disposition"] = f'inline; filename="scene_{scene.pk}_tiles.geojson"'
        return response

    @extend_schema(parameters=[queries.ProbabilityQuery],
                   responses={(200, "image/tiff"): OpenApiTypes.BINARY},
                   description="A single-band float32 GeoTIFF of the label's probability per "
                               "tile (NaN: no prediction, or an all-nodata tile), with the "
                               "scene's CRS; one cell per tile stride from the scene's origin.")
    def probabilities(self, request, pk=None):
        check_format(request)
        queries.check(queries.ProbabilityQuery, request)
        scene = self.get_object()
        label = request.query_params["label"]
        model = active_model()
        if label not in model.labels:
            raise ValidationError({"label": [f"unknown label {label!r}; the model's labels "
                                             f"are {', '.join(model.labels)}"]})
        response = HttpResponse(scenes.probability_tif(scene, label), content_type="image/tiff")
        response["Content-Disposition"] = (f'attachment; filename="scene_{scene.pk}_{label}'
                                           '_probability.tif"')
        return response


class LabelViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """The label vocabulary, with how far each label is from being trainable; curators
    (add_label) create labels the model does not know yet."""

    serializer_class = LabelSerializer
    permission_classes = [ReadAccess]

    def get_queryset(self):
        return labels.label_table()

    def get_object(self):
        found = labels.label_table(Label.objects.filter(pk=parse_id(self.kwargs["pk"])))
        if not found:
            raise NotFound("no such label")
        self.check_object_permissions(self.request, found[0])
        return found[0]

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "readiness": labels.readiness()}

    @extend_schema(request=LabelCreateSerializer, responses={201: LabelSerializer})
    def create(self, request, *args, **kwargs):
        form = LabelCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            label = labels.do_create_label(request.user, form.validated_data["name"],
                                           form.validated_data["description"],
                                           form.validated_data["display_name"])
        except labels.LabelRefused as exc:
            return Response({"name": [str(exc)]}, status=status.HTTP_403_FORBIDDEN
                            if exc.forbidden else status.HTTP_400_BAD_REQUEST)
        label = labels.label_table(Label.objects.filter(pk=label.pk))[0]
        return Response(self.get_serializer(label).data, status=status.HTTP_201_CREATED)


class ModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    """Model versions: the active one, candidates from trainings, retired ones; compare
    two on the evaluation images; activate one (with re-tagging; rollback = activate the
    previous one)."""

    serializer_class = ModelVersionSerializer
    permission_classes = [ReadAccess]
    queryset = ModelVersion.objects.all()

    @extend_schema(parameters=[queries.CompareQuery], responses={200: CompareSerializer})
    @action(detail=True, methods=["get"])
    def compare(self, request, pk=None):
        """This model against another (``against``: a model id, default the active one)
        on the evaluation images: F2 of both with the difference's paired bootstrap 95%
        interval, per label scores, PR curves, the images they disagree on most."""
        params = queries.check(queries.CompareQuery, request)
        candidate = self.get_object()
        against_id = params.get("against")
        against = (get_object_or_404(ModelVersion, pk=against_id) if against_id is not None
                   else active_model())
        return Response(comparison.compare(candidate, against))

    @extend_schema(request=ActivateSerializer, responses={202: ModelVersionSerializer})
    @action(detail=True, methods=["post"])
    def activate(self, request, pk=None):
        """Make this model the active one (it tags new uploads at once); with ``retag``
        (default) every unreviewed image is re-tagged in the background. Reviewed labels
        never change. Needs the change_modelversion permission."""
        form = ActivateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        model = self.get_object()
        try:
            activation.do_activate(model, request.user, form.validated_data["retag"])
        except activation.ActivationRefused as exc:
            raise PermissionDenied(str(exc)) from None
        model.refresh_from_db()
        return Response(self.get_serializer(model).data, status=status.HTTP_202_ACCEPTED)


class TrainingViewSet(mixins.CreateModelMixin, mixins.RetrieveModelMixin,
                      mixins.ListModelMixin, viewsets.GenericViewSet):
    """Training jobs: fine-tune a model on the curated train images; the result is a
    candidate model version (compare it, then activate it)."""

    serializer_class = TrainingSerializer
    permission_classes = [ReadAccess]
    queryset = TrainingJob.objects.select_related("result")

    @extend_schema(request=TrainingCreateSerializer, responses={202: TrainingSerializer})
    def create(self, request, *args, **kwargs):
        """Queue a training (curators: add_trainingjob). 202; poll the job."""
        form = TrainingCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            job = trainings.do_create(request.user, **form.validated_data)
        except trainings.TrainingRefused as exc:
            if exc.forbidden:
                raise PermissionDenied(str(exc)) from None
            raise ValidationError({"detail": str(exc)}) from None
        return Response(self.get_serializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: TrainingSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel: a queued job at once, a running one at its next training step."""
        try:
            job = trainings.do_cancel(self.get_object(), request.user)
        except trainings.TrainingRefused as exc:
            raise PermissionDenied(str(exc)) from None
        return Response(self.get_serializer(job).data, status=status.HTTP_202_ACCEPTED)
