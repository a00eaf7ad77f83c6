"""Query parameters of the API, checked strictly: a value the schema does not allow gets a
400 naming the parameter (the browser gallery stays lenient). Each serializer is also what
the OpenAPI schema shows (``extend_schema(parameters=[...])``), so the two cannot drift.
"""

from __future__ import annotations

import math

from django.core.validators import ProhibitNullCharactersValidator
from rest_framework import serializers

MAX_K = 500
MAX_ID = 2**63 - 1


def check(query: type[serializers.Serializer], request) -> dict:
    """Raise a 400 (ValidationError) when a query parameter has a value not allowed.

    A plain dict of the last value of each parameter, not the QueryDict: DRF reads an
    empty value in form data as "not given", but ``?batch=`` is no integer.
    """
    params = request.query_params
    form = query(data={key: params.getlist(key)[-1] for key in params})
    form.is_valid(raise_exception=True)
    return form.validated_data


class AnyText(serializers.CharField):
    """Any string, NUL included: such a tag name is schema-valid and matches nothing."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.validators = [v for v in self.validators
                           if not isinstance(v, ProhibitNullCharactersValidator)]


class ImageQuery(serializers.Serializer):
    tags = AnyText(required=False, allow_blank=True,
                   help_text="comma-separated label names (repeatable)")
    tag = AnyText(required=False, allow_blank=True, help_text="one label name")
    match = serializers.ChoiceField(["any", "all"], required=False)
    batch = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False)
    reviewed = serializers.BooleanField(required=False)
    min_confidence = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    partial = serializers.BooleanField(
        required=False, help_text="also scene tiles under MIN_TILE_COVERAGE (padded edges)")
    unusual = serializers.BooleanField(
        required=False, help_text="true: only images unlike the training imagery (their "
                                  "tags deserve doubt); false: only the others")

    def validate_min_confidence(self, value: float) -> float:
        if not math.isfinite(value):
            raise serializers.ValidationError("give a number between 0 and 1")
        return value


class SearchQuery(serializers.Serializer):
    q = serializers.RegexField(r"\S", max_length=500, help_text="words to look for")
    k = serializers.IntegerField(min_value=1, max_value=MAX_K, required=False,
                                 help_text=f"results, at most {MAX_K}")


class NearestQuery(serializers.Serializer):
    k = serializers.IntegerField(min_value=1, max_value=MAX_K, required=False,
                                 help_text=f"results, at most {MAX_K}")


class DescribeQuery(serializers.Serializer):
    k = serializers.IntegerField(min_value=1, max_value=50, required=False,
                                 help_text="texts, at most 50")


class SceneQuery(serializers.Serializer):
    batch = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False,
                                     help_text="only this batch's scenes")


class ProbabilityQuery(serializers.Serializer):
    label = serializers.RegexField(r"^[a-z0-9][a-z0-9_\-]{0,63}$",
                                   help_text="label name, e.g. primary")


class BatchQuery(serializers.Serializer):
    fields = serializers.ChoiceField(["counts"], required=False,
                                     help_text="counts: the batch without its items")
    images_after = serializers.IntegerField(
        min_value=-1, max_value=MAX_ID, required=False,
        help_text="item position the page of `images` starts after (see `images_next`)")
    images_status = serializers.ChoiceField(["queued", "done", "failed"], required=False,
                                            help_text="only items in this state")


class CompareQuery(serializers.Serializer):
    against = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False,
                                       help_text="model id to compare with (default: the "
                                                 "active model)")


class ReviewQuery(serializers.Serializer):
    order = serializers.ChoiceField(["informative", "uncertain"], required=False,
                                    help_text="informative (default): uncertainty mixed "
                                              "with diversity; uncertain: least certain first")
    label = serializers.RegexField(r"^[a-z0-9][a-z0-9_\-]{0,63}$", required=False,
                                   help_text="only images likely to carry this label")
    limit = serializers.IntegerField(min_value=1, max_value=500, required=False,
                                     help_text="images, at most 500 (default 50)")
