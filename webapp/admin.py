"""Django admin for curators: thumbnails, filters, bulk curation, a review queue, export."""

from __future__ import annotations

import re

from django import forms
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from webapp.models import (
    Batch,
    BatchItem,
    Image,
    ImageLabel,
    Label,
    ModelVersion,
    Prediction,
    ReviewQueue,
)
from webapp.services import (
    access,
    activation,
    curation,
    keyset,
    label_index,
    labels,
    splits,
)
from webapp.services.export import labels_csv
from webapp.services.gallery import parse_id, without_nul


class EstimatingPaginator(Paginator):
    """The admin's lists without COUNT(*) over a million rows: exact up to
    keyset.COUNT_CAP, beyond it the planner's estimate (keyset.estimated_count) for
    those who see every batch, else "COUNT_CAP + 1": a planner's guess comes from
    statistics over everyone's rows, so it is never shown to someone who sees a part."""

    estimate = True

    @cached_property
    def count(self) -> int:
        return keyset.estimated_count(self.object_list, planner=self.estimate)


class LargeListAdmin(admin.ModelAdmin):
    """Lists that grow with the collection: no full count, an estimating paginator."""

    show_full_result_count = False
    paginator = EstimatingPaginator

    def get_paginator(self, request, queryset, per_page, orphans=0,
                      allow_empty_first_page=True):
        paginator = super().get_paginator(request, queryset, per_page, orphans,
                                          allow_empty_first_page)
        paginator.estimate = request.user.has_perm(access.VIEW_ALL_BATCHES)
        return paginator


def thumbnail(image: Image, size: int = 64) -> str:
    if not image.display:
        return "-"
    url = reverse("image-file", kwargs={"pk": image.pk, "kind": "display"})
    # styled by class (static/webapp/admin.css): the CSP allows no inline style
    return format_html('<img class="admin-thumb" src="{}" width="{}" height="{}" '
                       'loading="lazy" alt="">', url, size, size)


class LabelFilter(admin.SimpleListFilter):
    title = "label"
    parameter_name = "label"

    def lookups(self, request, model_admin):
        return [(label.name, label.name) for label in Label.objects.all()]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(label_index.tag_filter([without_nul(self.value())]))
        return queryset


class BatchFilter(admin.SimpleListFilter):
    title = "batch"
    parameter_name = "batch"

    def lookups(self, request, model_admin):
        return [(b.pk, f"#{b.pk} {b.owner} {b.created_at:%Y-%m-%d %H:%M}")
                for b in access.visible_batches(request.user).order_by("-pk")[:30]]

    def queryset(self, request, queryset):
        if self.value():
            batch_id = parse_id(self.value())
            if batch_id is None or not access.visible_batches(request.user).filter(
                    pk=batch_id).exists():
                return queryset.none()
            return queryset.filter(batch_items__batch_id=batch_id).distinct()
        return queryset


class ConfidenceFilter(admin.SimpleListFilter):
    title = "model confidence"
    parameter_name = "confidence"
    BANDS = {"low": (0.0, 0.2), "medium": (0.2, 0.5), "high": (0.5, 1.01)}

    def lookups(self, request, model_admin):
        return [("low", "low (< 0.2)"), ("medium", "medium (0.2-0.5)"), ("high", "high (>= 0.5)")]

    def queryset(self, request, queryset):
        if self.value() in self.BANDS:
            lo, hi = self.BANDS[self.value()]
            return queryset.filter(confidence__gte=lo, confidence__lt=hi)
        return queryset


class LabelActionForm(admin.helpers.ActionForm):
    label = forms.ModelChoiceField(Label.objects.filter(active=True), required=False,
                                   help_text="for 'add label' / 'remove label'")


class ImageLabelInline(admin.TabularInline):
    """Pick labels to add, tick labels to remove; provenance is shown, never edited. The
    change is saved by the curation service (ImageAdmin.save_formset), as on the site."""

    model = ImageLabel
    extra = 1
    fields = ["label", "source", "probability", "added_by", "added_at", "reviewed"]
    readonly_fields = ["source", "probability", "added_by", "added_at", "reviewed"]
    autocomplete_fields = ["label"]


@admin.register(Image)
class ImageAdmin(LargeListAdmin):
    class Media:
        css = {"all": ["webapp/admin.css"]}

    list_display = ["thumb", "id", "original_name", "tag_list", "confidence", "reviewed",
                    "split", "status", "created_at"]
    list_display_links = ["thumb", "id"]
    list_filter = ["reviewed", "split", "status", LabelFilter, BatchFilter, ConfidenceFilter]
    search_fields = ["original_name"]  # and ids, SHA-256 prefixes: get_search_results
    search_help_text = "file name (any part), image id (123 or img_123), SHA-256 prefix"
    list_per_page = 50
    action_form = LabelActionForm
    actions = ["accept_predictions", "mark_reviewed", "add_label", "remove_label",
               "clear_broken", "move_to_train", "move_to_evaluation", "export_csv"]
    readonly_fields = ["preview", "sha256", "format", "width", "height", "size_bytes",
                       "created_at", "uploaded_by", "prediction", "confidence", "status",
                       "error", "reviewed_by", "reviewed_at", "probabilities", "split"]
    fields = ["preview", "original_name", "reviewed", *readonly_fields[1:]]
    # "reviewed" changes through the curation actions and label edits only
    readonly_fields = [*readonly_fields, "reviewed"]
    inlines = [ImageLabelInline]

    def get_queryset(self, request):
        """Only what ``access`` lets this person open: other users' pending uploads and
        private scenes' tiles stay out of the list, the filters and the edit pages."""
        images = access.visible_images(request.user, super().get_queryset(request))
        # no prediction joined: no column shows it, and a join under the sort made a
        # name search matching 27,000 images probe 27,000 predictions (the change page
        # reads its one prediction by itself)
        return images.prefetch_related("labels__label")

    def get_search_results(self, request, queryset, search_term):
        """Each lookup on an index at a million images: a file name's part through the
        name's trigram index (PostgreSQL, migration 0017), an id by primary key, a
        SHA-256 prefix through the digest's index (not "contains" on the digest: a scan
        of every row, about a second)."""
        term = without_nul(search_term).strip()
        if not term:
            return queryset, False
        found = Q(original_name__icontains=term)
        number = re.fullmatch(r"(?:img_)?(\d{1,18})", term, re.IGNORECASE)
        if number:
            found |= Q(pk=int(number[1]))
        if re.fullmatch(r"[0-9a-fA-F]{6,64}", term):
            found |= Q(sha256__startswith=term.lower())
        return queryset.filter(found), False

    @admin.display(description="image")
    def thumb(self, image: Image) -> str:
        return thumbnail(image)

    @admin.display(description="preview")
    def preview(self, image: Image) -> str:
        return thumbnail(image, 256)

    @admin.display(description="labels")
    def tag_list(self, image: Image) -> str:
        return format_html_join(" ", '<span title="{}">{}{}</span>', (
            (f"{il.source}{', reviewed' if il.reviewed else ''}", il.label.name,
             "" if il.source == "model" else "*") for il in image.labels.all()))

    @admin.display(description="probabilities")
    def probabilities(self, image: Image) -> str:
        if not image.prediction:
            return "-"
        rows = sorted(image.prediction.probabilities.items(), key=lambda kv: -kv[1])
        return format_html_join(", ", "{}: {}", ((k, f"{v:.2f}") for k, v in rows))

    def save_formset(self, request, form, formset, change):
        """The inline's rows become the image's label set, written by curation.set_labels:
        new labels are the person's, the image is reviewed, its text code follows."""
        if formset.model is not ImageLabel:
            return super().save_formset(request, form, formset, change)
        deleted = set(formset.deleted_forms)
        names = [row.cleaned_data["label"].name for row in formset.forms
                 if row not in deleted and row.cleaned_data.get("label")]
        current = set(form.instance.labels.values_list("label__name", flat=True))
        if set(names) != current:
            curation.set_labels(form.instance, names, request.user)
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        return None

    @admin.action(description="Accept predictions as labels (and mark reviewed)",
                  permissions=["curate"])
    def accept_predictions(self, request: HttpRequest, queryset: QuerySet[Image]) -> None:
        count = curation.accept_predictions(queryset, request.user)
        self.message_user(request, f"Accepted the predictions of {count} images.")

    @admin.action(description="Mark reviewed", permissions=["curate"])
    def mark_reviewed(self, request: HttpRequest, queryset: QuerySet[Image]) -> None:
        count = curation.mark_reviewed(queryset, request.user)
        self.message_user(request, f"Marked {count} images reviewed.")

    def _chosen_label(self, request: HttpRequest) -> Label | None:
        # Only the label field: a bare LabelActionForm has no action choices, so it never
        # validates outside the changelist.
        try:
            label = LabelActionForm.base_fields["label"].clean(request.POST.get("label"))
        except forms.ValidationError:
            label = None
        if label:
            return label
        self.message_user(request, "Choose a label next to the action first.", messages.ERROR)
        return None

    @admin.action(description="Add the chosen label", permissions=["curate"])
    def add_label(self, request: HttpRequest, queryset: QuerySet[Image]) -> None:
        if label := self._chosen_label(request):
            count = curation.add_label(queryset, label, request.user)
            self.message_user(request, f"Added '{label}' to {count} images.")

    @admin.action(description="Remove the chosen label", permissions=["curate"])
    def remove_label(self, request: HttpRequest, queryset: QuerySet[Image]) -> None:
        if label := self._chosen_label(request):
            count = curation.remove_label(queryset, label)
            self.message_user(request, f"Removed '{label}' from {count} images.")

    @admin.action(description="Clear the 'broken' mark (the next upload retries them)",
                  permissions=["curate"])
    def clear_broken(self, request: HttpRequest, queryset: QuerySet[Image]) -> None:
        count = curation.clear_broken(queryset)
        self.message_user(request, f"Cleared the broken mark of {count} images.")

    @admin.action(description="Move to the train set", permissions=["move_split"])
    def move_to_train(self, request: HttpRequest, queryset: QuerySet[Image]) -> None:
        count = splits.do_move_many(queryset, Image.Split.TRAIN, request.user)
        self.message_user(request, f"Moved {count} images to the train set.")

    @admin.action(description="Move to the evaluation set (never trained on)",
                  permissions=["move_split"])
    def move_to_evaluation(self, request: HttpRequest, queryset: QuerySet[Image]) -> None:
        count = splits.do_move_many(queryset, Image.Split.EVALUATION, request.user)
        self.message_user(request, f"Moved {count} images to the evaluation set.")

    def has_move_split_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("webapp.move_split")

    @admin.action(description="Export labels as Planet CSV (image_name,tags)")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Image]) -> HttpResponse:
        response = HttpResponse(labels_csv(queryset), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="labels.csv"'
        return response

    def has_curate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("webapp.curate_image")


@admin.register(ReviewQueue)
class ReviewQueueAdmin(ImageAdmin):
    """Unreviewed predicted images, the model's least certain decisions first."""

    list_filter = [LabelFilter, BatchFilter, ConfidenceFilter]

    def get_queryset(self, request):
        return (super().get_queryset(request)
                .filter(reviewed=False, status=Image.Status.READY)
                .order_by("confidence", "id"))

    def get_ordering(self, request):
        return ["confidence", "id"]


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    """The vocabulary: each label with its reviewed positives per set, whether the active
    model knows it, and how many reviewed train positives it still needs to be trained."""

    list_display = ["name", "display_name", "active", "description", "n_images",
                    "reviewed_train", "reviewed_evaluation", "known", "missing"]
    list_editable = ["active"]
    search_fields = ["name"]

    def changelist_view(self, request, extra_context=None):
        self._readiness = labels.readiness()
        self._table = {label.pk: label for label in labels.label_table()}
        return super().changelist_view(request, extra_context)

    def _counted(self, label: Label) -> Label:
        """The label with its counts (labels.label_table: a few queries for all)."""
        return self._table.get(label.pk) or labels.label_table(
            Label.objects.filter(pk=label.pk))[0]

    def save_model(self, request, obj: Label, form, change) -> None:
        labels.do_save_label(obj)

    @admin.display(description="images")
    def n_images(self, label: Label) -> str:
        counted = self._counted(label)
        return f"{counted.images:,}" if counted.images_exact else f"~{counted.images:,}"

    @admin.display(description="reviewed in train")
    def reviewed_train(self, label: Label) -> int:
        return self._counted(label).reviewed_train

    @admin.display(description="reviewed in evaluation")
    def reviewed_evaluation(self, label: Label) -> int:
        return self._counted(label).reviewed_evaluation

    @admin.display(boolean=True, description="active model knows it")
    def known(self, label: Label) -> bool:
        return label.name in self._readiness.known

    @admin.display(description="reviewed train positives missing")
    def missing(self, label: Label) -> int:
        return self._readiness.missing(self._counted(label).reviewed_train)

    def has_delete_permission(self, request, obj=None):
        # Labels in use are protected by the database; deactivate them instead.
        return super().has_delete_permission(request, obj) and (
            obj is None or not obj.image_labels.exists())


class BatchItemInline(admin.TabularInline):
    model = BatchItem
    fields = ["position", "filename", "status", "error", "image", "reused"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Batch)
class BatchAdmin(LargeListAdmin):
    list_display = ["id", "owner", "status", "total", "done", "failed", "reused", "created_at",
                    "finished_at"]
    list_filter = ["status"]
    readonly_fields = ["owner", "status", "submitted", "total", "done", "failed", "reused",
                       "created_at", "started_at", "finished_at"]
    inlines = [BatchItemInline]

    def get_queryset(self, request):
        """Owners' batches, or every batch with view_all_batches: as on the site."""
        return access.visible_batches(request.user)

    def has_add_permission(self, request):
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["version", "name", "state", "is_active", "created_at", "test_f2"]
    readonly_fields = ["version", "name", "path", "created_at", "summary", "per_label"]
    fields = readonly_fields
    actions = ["activate"]

    @admin.display(description="F2 (sample-averaged)")
    def summary(self, model: ModelVersion) -> str:
        parts = [f"{split}: {model.metrics[split]['f2']:.4f} on "
                 f"{model.metrics[split].get('n_images', '?')} images"
                 for split in ("val", "test") if "f2" in model.metrics.get(split, {})]
        return "; ".join(parts) or "-"

    @admin.display(description="per label (test split), weakest first")
    def per_label(self, model: ModelVersion) -> str:
        """A row per label, weakest F2 first, so that a label the model never gets right
        (F2 = 0 on a rare label) is the first thing read, not lost in JSON."""
        rows = sorted(model.metrics.get("per_label_test", {}).items(),
                      key=lambda kv: (kv[1].get("f2", 0.0), kv[0]))
        if not rows:
            return "-"
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
                                "<td>{}</td></tr>", (
            (name, f"{m.get('f2', 0):.3f}", f"{m.get('precision', 0):.3f}",
             f"{m.get('recall', 0):.3f}", m.get("support", "")) for name, m in rows))
        return format_html('<table class="per-label"><thead><tr><th>label</th><th>F2</th>'
                           "<th>precision</th><th>recall</th><th>support</th></tr></thead>"
                           "<tbody>{}</tbody></table>", body)

    @admin.display(description="test F2")
    def test_f2(self, model: ModelVersion) -> str:
        f2 = model.metrics.get("test", {}).get("f2")
        return f"{f2:.4f}" if f2 is not None else "-"

    @admin.action(description="Make active (tags new uploads) and re-tag unreviewed images",
                  permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Choose exactly one model.", messages.ERROR)
            return
        model = queryset.get()
        job = activation.do_activate(model, request.user, retag=True)
        self.message_user(request, f"{model.version} is now active; re-tagging "
                                   f"{job.total if job else 0} unreviewed images.")

    def has_add_permission(self, request):
        return False  # models come from `manage.py register_model DIR`


@admin.register(Prediction)
class PredictionAdmin(LargeListAdmin):
    list_display = ["image", "model", "confidence", "created_at"]
    # newest first by primary key: the model's created_at order has no index (sorting a
    # million rows took 1.2 s), and no column sorts for the same reason
    ordering = ["-id"]
    sortable_by: list[str] = []
    readonly_fields = ["image", "model", "probabilities", "tags", "confidence", "created_at"]

    def has_add_permission(self, request):
        return False
