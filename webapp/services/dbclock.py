"""The database's clock: one clock for every machine that writes or reads change times.

Search indexes in many processes read "codes changed since T"; if T came from one
machine's clock and the change times from another's, a skew would hide changes. Both
sides use the database server's time instead.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import connection
from django.db.models.functions import Now

__all__ = ["Now", "database_now"]


def database_now() -> datetime:
    """The current time as the database server sees it (aware, UTC)."""
    if connection.vendor == "sqlite":
        sql = "SELECT STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW')"
    else:
        sql = "SELECT STATEMENT_TIMESTAMP()"
    with connection.cursor() as cursor:
        cursor.execute(sql)
        value = cursor.fetchone()[0]
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
