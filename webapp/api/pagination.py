from rest_framework import pagination
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.utils.urls import remove_query_param, replace_query_param

from webapp.services import keyset


class PageNumberPagination(pagination.PageNumberPagination):
    """?page= and ?page_size= (1 to 500); a page size out of range is a 400, not ignored."""

    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise ValidationError({self.page_size_query_param: [
                f"give a whole number from 1 to {self.max_page_size}"]})
        return size

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
        return parameters


class KeysetPagination(pagination.BasePagination):
    """Newest-first image lists by cursor (webapp.services.keyset): every page costs the
    same, deep or not, and rows added meanwhile never shift a page. ``next`` and
    ``previous`` are links to follow; ``?page=N`` (up to keyset.MAX_PAGE_NUMBER) still
    works as an offset. ``count`` is exact up to keyset.COUNT_CAP, else null with ``more_than``."""

    page_size = api_settings.PAGE_SIZE
    page_size_query_param = "page_size"
    cursor_query_param = "cursor"
    page_query_param = "page"
    max_page_size = PageNumberPagination.max_page_size
    MAX_PAGE_NUMBER = keyset.MAX_PAGE_NUMBER

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        size = PageNumberPagination.get_page_size(self, request)
        cursor = request.query_params.get(self.cursor_query_param)
        raw_number = request.query_params.get(self.page_query_param)
        try:
            if cursor:
                self.page = keyset.page(queryset, size, cursor)
            elif raw_number not in (None, "", "1"):
                number = int(raw_number) if raw_number.isdigit() else 0
                if not 1 < number <= self.MAX_PAGE_NUMBER:
                    raise NotFound(f"page numbers go from 1 to {self.MAX_PAGE_NUMBER}; "
                                   "deeper pages: follow the next links")
                self.page = keyset.offset_page(queryset, size, number)
                if not self.page.object_list:
                    raise NotFound("no such page: past the last image")
            else:
                self.page = keyset.page(queryset, size)
        except keyset.BadCursor as exc:
            raise ValidationError({self.cursor_query_param: [str(exc)]}) from None
        return self.page.object_list

    def _link(self, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        url = remove_query_param(self.request.build_absolute_uri(), self.page_query_param)
        return replace_query_param(url, self.cursor_query_param, cursor)

    def get_paginated_response(self, data):
        page = self.page
        return Response({"count": page.count,
                         "more_than": page.count_cap if page.count is None else None,
                         "next": self._link(page.next_cursor),
                         "previous": self._link(page.previous_cursor), "results": data})

    def get_paginated_response_schema(self, schema):
        link = {"type": "string", "nullable": True, "format": "uri"}
        return {"type": "object", "required": ["count", "more_than", "next", "previous",
                                                "results"],
                "properties": {
                    "count": {"type": "integer", "nullable": True,
                              "description": "matches, exact up to more_than's cap; null "
                                             "when more match"},
                    "more_than": {"type": "integer", "nullable": True,
                                  "description": "set when count is null: more than this "
                                                 "many match"},
                    "next": link, "previous": link, "results": schema}}

    def get_schema_operation_parameters(self, view):
        return [
            {"name": self.cursor_query_param, "required": False, "in": "query",
             "description": "where the page starts: the cursor in a next/previous link",
             "schema": {"type": "string"}},
            {"name": self.page_query_param, "required": False, "in": "query",
             "description": f"a page number (1 to {self.MAX_PAGE_NUMBER}); deeper pages by "
                            "following next", "schema": {"type": "integer", "minimum": 1,
                                                         "maximum": self.MAX_PAGE_NUMBER}},
            {"name": self.page_size_query_param, "required": False, "in": "query",
             "description": "images per page",
             "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size}},
        ]
