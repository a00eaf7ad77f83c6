"""Browser pages: thin views over webapp.services; the JavaScript talks to the API."""

from __future__ import annotations

import mimetypes
from functools import wraps
from pathlib import PurePosixPath

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from webapp.api.throttles import page_allowed
from webapp.conf import app_settings
from webapp.models import Image, Label, ModelVersion, TrainingJob
from webapp.services import access, curation, keyset, review_order, scenes, search
from webapp.services import labels as label_service
from webapp.services.gallery import (
    ImageFilter,
    TooManyTags,
    gallery_queryset,
    parse_id,
    ranked_images,
    visible_matches,
)
from webapp.services.model_registry import active_model
from webapp.services.storage import FORMATS

GALLERY_PAGE_SIZE = 48
FAILURES_SHOWN = 500  # failed items listed on a page (the API pages on: images_next)


def reads(view):
    """Pages that read the collection: a login is needed unless PUBLIC_READS is on."""
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not access.can_read(request.user):
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapped


@require_GET
@reads
def gallery(request: HttpRequest) -> HttpResponse:
    """The gallery; with ?q= (text) or ?similar=<id> (image) it is a ranked search."""
    status = 200
    try:
        image_filter = ImageFilter.from_params(request.GET)
    except TooManyTags as exc:  # the gallery without that filter, the message, and a 400
        messages.error(request, str(exc))
        image_filter, status = ImageFilter(), 400
    batch = None
    if image_filter.batch:  # someone else's batch is as good as no batch: nothing shown
        batch = access.visible_batches(request.user).filter(pk=image_filter.batch).first()
        if batch is None:
            image_filter.batch = 0
    text = (request.GET.get("q") or "").strip()[:500]
    similar_to = parse_id(request.GET.get("similar"))
    if text or similar_to or image_filter.tags:  # the costly pages share one budget
        allowed, wait = page_allowed(request, "gallery_search")
        if not allowed:
            response = render(request, "429.html", {"wait": round(wait or 1)}, status=429)
            response["Retry-After"] = str(max(1, round(wait or 1)))
            return response
    search_context: dict = {}
    if text or similar_to:
        page, search_context = _ranked_page(request, image_filter, text, similar_to)
    else:
        page = _gallery_page(request, gallery_queryset(image_filter, request.user))
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("cursor", None)
    failures = (batch.items.filter(status="failed").order_by("position")[:FAILURES_SHOWN]
                if batch else [])
    return render(request, "webapp/gallery.html", {
        "page": page, "filter": image_filter, "labels": Label.objects.all(),
        "query": query.urlencode(), "batch": batch, "failures": failures, "q": text,
        "search_available": search.available(), **search_context,
    }, status=status)


def _gallery_page(request: HttpRequest, images) -> keyset.KeysetPage:
    """The page the links point at (a cursor), or a page number typed by hand; junk or a
    number past the end shows the first page (the gallery is lenient)."""
    try:
        cursor = request.GET.get("cursor")
        if cursor:
            return keyset.page(images, GALLERY_PAGE_SIZE, cursor)
    except keyset.BadCursor:
        pass
    number = parse_id(request.GET.get("page")) or 1
    if 1 < number <= keyset.MAX_PAGE_NUMBER:
        found = keyset.offset_page(images, GALLERY_PAGE_SIZE, number)
        if found.object_list:
            return found
    return keyset.page(images, GALLERY_PAGE_SIZE)


SEARCH_RESULTS = 240


def _ranked_page(request: HttpRequest, image_filter: ImageFilter, text: str,
                 similar_to: int | None):
    """A page of search results (nearest first, the gallery's filters applied), each
    image carrying its Hamming ``distance``."""
    context: dict = {"ranked": True}
    matches: list[search.Match] = []
    if not search.available():
        messages.error(request, "Search is not available: no retrieval model is installed.")
    elif text:
        try:
            matches, ignored = search.search_text(text, SEARCH_RESULTS)
            if ignored:
                messages.info(request, f"Ignored words the model does not know: "
                                       f"{', '.join(ignored)}")
        except search.UnknownQuery as exc:
            messages.error(request, str(exc))
    else:
        anchor = Image.objects.filter(pk=similar_to, status=Image.Status.READY).first()
        if anchor is not None and not access.can_see_image(request.user, anchor):
            anchor = None
        if anchor is None:
            messages.error(request, "No such image to compare with.")
        else:
            matches = search.similar_images(anchor, SEARCH_RESULTS)
            context["similar_to"] = anchor
    matches = visible_matches(matches, request.user, image_filter)
    context["strong"] = sum(match.strength == "strong" for match in matches)
    context["weaker"] = len(matches) - context["strong"]
    page = Paginator(matches, GALLERY_PAGE_SIZE).get_page(request.GET.get("page"))
    page.object_list = ranked_images(page.object_list)
    return page, context


@require_http_methods(["GET", "POST"])
@reads
def image_detail(request: HttpRequest, pk: int) -> HttpResponse:
    image = get_object_or_404(
        Image.objects.select_related("prediction__model", "reviewed_by", "uploaded_by"), pk=pk)
    if not access.can_see_image(request.user, image):
        raise Http404("no such image")
    can_curate = request.user.has_perm("webapp.curate_image")
    if request.method == "POST":
        if not can_curate:
            messages.error(request, "Editing labels needs curator rights.")
            return redirect("image-detail-page", pk=pk)
        try:
            curation.set_labels(image, request.POST.getlist("tags"), request.user)
            messages.success(request, "Labels saved; the image is marked reviewed.")
        except curation.UnknownLabels as exc:
            messages.error(request, str(exc))
        return redirect("image-detail-page", pk=pk)
    labels = list(image.labels.select_related("label", "added_by"))
    current = {il.label.name for il in labels}
    prediction = image.prediction
    bars, predicted = [], []
    if prediction:
        tags = set(prediction.tags)
        known = Label.objects.in_bulk(list(prediction.probabilities), field_name="name")

        def word(name: str) -> dict[str, str]:  # the name people read, and what it means
            label = known.get(name)
            return {"shown": label.shown if label else name.replace("_", " "),
                    "description": label.description if label else ""}

        bars = sorted(({"label": name, **word(name), "p": p, "percent": round(p * 100, 1),
                        "predicted": name in tags}
                       for name, p in prediction.probabilities.items()),
                      key=lambda bar: -bar["p"])
        predicted = [word(name) for name in prediction.tags]
    descriptions = (search.describe(image) if image.status == Image.Status.READY
                    and search.available() else [])
    return render(request, "webapp/image_detail.html", {
        "descriptions": descriptions, "search_available": search.available(),
        "image": image, "labels": labels, "bars": bars, "predicted": predicted,
        "can_curate": can_curate,
        "vocabulary": [(label, label.name in current)
                       for label in Label.objects.filter(active=True)],
        "batches": access.visible_batches(request.user).filter(items__image=image)
        .distinct()[:20],
        "tiles": scenes.tiles_of_image(image, request.user)[:20],
        "show_people": access.can_see_people(request.user),
        "predictions": image.predictions.select_related("model").order_by("-created_at")[:20],
    })


@login_required
@require_GET
def upload(request: HttpRequest) -> HttpResponse:
    return render(request, "webapp/upload.html", {
        "max_bytes": app_settings.MAX_UPLOAD_BYTES, "model": active_model(),
        "tile": app_settings.SCENE_TILE_SIZE, "scene_side": app_settings.SCENE_MIN_SIDE,
        "min_coverage": int(app_settings.MIN_TILE_COVERAGE * 100),
    })


@login_required
@require_GET
def batch_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(access.visible_batches(request.user), 25).get_page(request.GET.get("page"))
    return render(request, "webapp/batch_list.html", {"page": page})


@login_required
@require_GET
def batch_detail(request: HttpRequest, pk: int) -> HttpResponse:
    batch = get_object_or_404(access.visible_batches(request.user), pk=pk)
    failures = batch.items.filter(status="failed").order_by("position")[:FAILURES_SHOWN]
    batch_scenes = scenes.with_progress(batch.scenes.all())
    return render(request, "webapp/batch_detail.html", {"batch": batch, "failures": failures,
                                                        "scenes": batch_scenes})


@login_required
@require_GET
def scene_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The scene's overview with the tile grid coloured by a label's probability, counts
    per label, and a map when the scene is georeferenced (data: the scene API)."""
    scene = get_object_or_404(scenes.with_progress(scenes.visible_scenes(request.user)), pk=pk)
    figures = scenes.overview(scene)
    labels = figures.labels or list(active_model().labels)
    min_coverage = app_settings.MIN_TILE_COVERAGE
    return render(request, "webapp/scene_detail.html", {
        "scene": scene, "labels": labels, "counts": figures.counts,
        "min_coverage": min_coverage, "min_coverage_percent": round(min_coverage * 100),
        "partial_tiles": figures.partial_tiles,
        "default_label": next(iter(figures.counts), labels[0] if labels else ""),
        "basemap_url": app_settings.SCENE_BASEMAP_URL,
        "basemap_attribution": app_settings.SCENE_BASEMAP_ATTRIBUTION,
    })


@login_required
@require_GET
def scene_preview(request: HttpRequest, pk: int) -> HttpResponse:
    """The scene's overview PNG (made by the worker; never the full raster)."""
    scene = get_object_or_404(scenes.visible_scenes(request.user), pk=pk)
    if not scene.preview:
        raise Http404("the preview is made when a worker starts on the scene")
    try:
        handle = scene.preview.open("rb")
    except FileNotFoundError:
        raise Http404("file missing from storage") from None
    response = FileResponse(handle, content_type="image/png")
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=86400"
    return response


@require_GET
def image_file(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    """Serve stored bytes with a content type we chose, never one the uploader chose.
    Originals (with their metadata, GPS included) are never public."""
    public = kind != "original" and access.can_read(request.user)
    if not (request.user.is_authenticated or public):
        return redirect_to_login(request.get_full_path())
    image = get_object_or_404(Image, pk=pk)
    if not access.can_see_image(request.user, image):
        raise Http404("no such image")
    field = {"original": image.file, "display": image.display, "dehazed": image.dehazed}.get(kind)
    if not field:
        raise Http404("no such file")
    if kind == "original":
        content_type = FORMATS.get(image.format, ("", "application/octet-stream"))[1]
    else:
        content_type = mimetypes.guess_type(field.name)[0] or "application/octet-stream"
    try:
        handle = field.open("rb")
    except FileNotFoundError:
        raise Http404("file missing from storage") from None
    response = FileResponse(handle, content_type=content_type)
    disposition = "attachment" if kind == "original" else "inline"
    suffix = PurePosixPath(field.name).suffix  # display copies are JPEG whatever the original
    response["Content-Disposition"] = f'{disposition}; filename="{image.name}{suffix}"'
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=86400"
    return response


def _may_train(user) -> bool:
    return user.has_perm("webapp.add_trainingjob") or user.has_perm("webapp.view_trainingjob")


@login_required
@require_GET
def trainings_page(request: HttpRequest) -> HttpResponse:
    """"Train a model": which labels are ready, the form, and every job with live
    progress (the page's JavaScript posts to and polls the trainings API)."""
    if not _may_train(request.user):
        raise PermissionDenied("training needs curator rights")
    ready = label_service.readiness()
    table = [{"label": label, "known": label.name in ready.known,
              "missing": ready.missing(label.reviewed_train)}
             for label in label_service.label_table(Label.objects.filter(active=True))]
    return render(request, "webapp/trainings.html", {
        "labels": table, "models": ModelVersion.objects.all(), "active": active_model(),
        "epochs": app_settings.TRAINING_EPOCHS, "max_epochs": app_settings.TRAINING_MAX_EPOCHS,
        "minimum": ready.minimum, "may_start": request.user.has_perm("webapp.add_trainingjob"),
        "jobs": TrainingJob.objects.select_related("result", "base")[:50],
    })


REVIEW_KEYS = "1234567890qwertyiodfghlzxcvbm"  # label toggles; n p s u a: navigation


@login_required
@require_GET
def review_page(request: HttpRequest) -> HttpResponse:
    """The review page: one image at a time, keyboard first; the queue comes from the
    review API (its order and label filter), every save is a PATCH of the image's tags
    (the curation service)."""
    if not request.user.has_perm("webapp.curate_image"):
        raise PermissionDenied("reviewing needs curator rights")
    vocabulary = list(Label.objects.filter(active=True))
    order = request.GET.get("order") if request.GET.get("order") in review_order.ORDERS \
        else "informative"
    label = request.GET.get("label", "")
    return render(request, "webapp/review.html", {
        "keys": list(zip(REVIEW_KEYS, vocabulary)), "unkeyed": vocabulary[len(REVIEW_KEYS):],
        "order": order, "orders": review_order.ORDERS,
        "label": label if Label.objects.filter(name=label).exists() else "",
        "labels": vocabulary,
    })


@reads
@require_GET
def model_compare(request: HttpRequest, pk: int) -> HttpResponse:
    """A model against another (default: the active one) on the evaluation images; the
    numbers, curves and disagreements come from the compare API."""
    model = get_object_or_404(ModelVersion, pk=pk)
    against = parse_id(request.GET.get("against"))
    against_model = (ModelVersion.objects.filter(pk=against).first() if against else None) \
        or active_model()
    return render(request, "webapp/model_compare.html", {
        "model": model, "against": against_model, "models": ModelVersion.objects.all(),
        "may_activate": request.user.has_perm("webapp.change_modelversion"),
    })


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404: JSON under /api/ (what API clients parse), the site's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "not found"}, status=404)
    return render(request, "404.html", status=404)
