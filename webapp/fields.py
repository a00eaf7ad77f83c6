"""Model fields of our own."""

from __future__ import annotations

import json
from typing import Any

from django.db import models


class LabelIdsField(models.Field):
    """A sorted list of label ids: ``integer[]`` on PostgreSQL, where a GIN index serves
    the tag filters (``@>`` all of them, ``&&`` any of them) with element statistics that
    let the planner tell a rare tag from a common one; JSON text on SQLite, the embedded
    default, whose gallery filters through the label rows instead
    (webapp.services.label_index)."""

    description = "sorted label ids"

    def db_type(self, connection) -> str:
        return "integer[]" if connection.vendor == "postgresql" else "text"

    def from_db_value(self, value: Any, expression, connection) -> list[int]:
        if value is None:
            return []
        return json.loads(value) if isinstance(value, str) else list(value)

    def to_python(self, value: Any) -> list[int]:
        if isinstance(value, str):
            return json.loads(value)
        return sorted(int(v) for v in value or [])

    def get_db_prep_value(self, value: Any, connection, prepared: bool = False) -> Any:
        ids = sorted(int(v) for v in value or [])
        return ids if connection.vendor == "postgresql" else json.dumps(ids)


class _ArrayLookup(models.Lookup):
    """``field__has_all=[ids]`` / ``field__has_any=[ids]``: PostgreSQL only."""

    operator = ""

    def get_db_prep_lookup(self, value, connection):
        return "%s", [sorted(int(v) for v in value)]

    def as_sql(self, compiler, connection):
        if connection.vendor != "postgresql":
            raise NotImplementedError("label id lookups need PostgreSQL")
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} {self.operator} ({rhs})::integer[]", [*lhs_params, *rhs_params]


@LabelIdsField.register_lookup
class HasAll(_ArrayLookup):
    lookup_name = "has_all"
    operator = "@>"


@LabelIdsField.register_lookup
class HasAny(_ArrayLookup):
    lookup_name = "has_any"
    operator = "&&"
