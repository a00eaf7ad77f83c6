"""Search endpoints: text -> images, image file -> images; similar/describe live on images."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from imagery.decode import ImageDecodeError
from webapp.api import queries
from webapp.api.pagination import PageNumberPagination
from webapp.api.permissions import ReadAccess
from webapp.api.serializers import (
    ImageSerializer,
    MatchPageSerializer,
    TextSearchPageSerializer,
)
from webapp.api.throttles import ScopedThrottle
from webapp.services import ingest, search
from webapp.services.gallery import ranked_images, visible_matches
from webapp.services.upload_limits import safe_filename

MAX_K = queries.MAX_K


def parse_k(value, default: int = 50) -> int:
    try:
        return max(1, min(int(value), MAX_K))
    except (TypeError, ValueError):
        return default


def unavailable() -> Response:
    return Response({"detail": "search is not available: no retrieval model is installed "
                               "(RETRIEVAL_MODEL)"}, status=status.HTTP_503_SERVICE_UNAVAILABLE)


def matches_response(view: APIView, request, matches: list[search.Match], **extra) -> Response:
    """Paginated images in match order, each with its Hamming distance (only images this
    user may see: a private scene's tiles are left out before paging)."""
    paginator = PageNumberPagination()
    page = paginator.paginate_queryset(visible_matches(matches, request.user), request,
                                       view=view)
    results = [{"distance": image.distance, "strength": image.strength,
                **ImageSerializer(image, context={"request": request}).data}
               for image in ranked_images(page)]
    response = paginator.get_paginated_response(results)
    response.data.update(extra)
    return response


class SearchView(APIView):
    """GET ?q=text: images nearest to the text. POST a `file`: images nearest to it."""

    permission_classes = [ReadAccess]
    parser_classes = [MultiPartParser]

    def get_throttles(self):
        """Image search decodes and encodes a file: its own tight scope."""
        if self.request.method == "POST":
            self.throttle_scope = "image_search"
            return [*super().get_throttles(), ScopedThrottle()]
        return super().get_throttles()

    @extend_schema(parameters=[queries.SearchQuery], responses=TextSearchPageSerializer)
    def get(self, request):
        query = (request.query_params.get("q") or "").strip()
        if not query:
            return Response({"detail": "give the text to search for in ?q="},
                            status=status.HTTP_400_BAD_REQUEST)
        queries.check(queries.SearchQuery, request)
        if not search.available():
            return unavailable()
        try:
            matches, unknown = search.search_text(query, parse_k(request.query_params.get("k")))
        except search.UnknownQuery as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return matches_response(self, request, matches, query=query, ignored_words=unknown)

    @extend_schema(request=inline_serializer("SearchUpload", {"file": serializers.FileField()}),
                   parameters=[queries.NearestQuery], responses=MatchPageSerializer)
    def post(self, request):
        queries.check(queries.NearestQuery, request)
        upload = request.FILES.get("file")
        if upload is None:
            return Response({"detail": "send an image in the 'file' field"},
                            status=status.HTTP_400_BAD_REQUEST)
        if not search.available():
            return unavailable()
        try:  # checked exactly as uploads are (format list, bytes, pixels), then decoded
            ingest.inspect_upload(upload)  # shrunk while decoding
            matches = search.search_upload(upload.read(), parse_k(request.query_params.get("k")))
        except ingest.UploadRejected as exc:
            return Response({"detail": f"{safe_filename(upload.name)}: {exc}"},
                            status=status.HTTP_400_BAD_REQUEST)
        except ImageDecodeError as exc:
            return Response({"detail": f"{safe_filename(upload.name)}: {exc}"},
                            status=status.HTTP_400_BAD_REQUEST)
        return matches_response(self, request, matches)
