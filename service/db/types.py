"""Column types shared by all tables: aware UTC datetimes, encrypted text, JSON."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import JSON, Column, DateTime, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field

from service import secretbox
from service.db.engine import json_text

__all__ = [
    "MAX_ROW_ID",
    "EncryptedText",
    "JSONText",
    "JSONType",
    "SignedJSONType",
    "UTCDateTime",
    "as_text",
    "as_time",
    "encrypted",
    "json_field",
    "new_uuid",
    "row_id",
    "utcnow",
]

JSONType = JSON().with_variant(JSONB(), "postgresql")


class JSONText(TypeDecorator[Any]):
    """JSON kept as the text it was written as (PostgreSQL TEXT): no JSONB parse and
    binary encoding on the way in (bench/README.md, the credential document as TEXT), and
    the stored bytes are the serialised ones, key order included: the credential's VC-JWT
    payload, as SQLite stores it. Nothing queries inside such a column."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return json_text(value)  # writes an orjson.Fragment (serialised once) as it is

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:  # what orjson refuses (integers beyond 64 bits)
            return json.loads(value)


def json_field(default_factory: Callable[[], Any]) -> Any:
    """A NOT NULL JSON field (JSONB on PostgreSQL) that starts as ``default_factory()``."""
    return Field(default_factory=default_factory, sa_column=Column(JSONType, nullable=False))


# A signed document: JSON on SQLite (text there already), JSONText on PostgreSQL.
SignedJSONType = JSON().with_variant(JSONText(), "postgresql")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_uuid() -> str:
    """A random uuid as text: the default of the tables' public ``uuid`` columns."""
    return str(uuid.uuid4())


def as_text(value: Any) -> str:
    """A value a Core select returned, as text to digest. SQLite returns max() of a
    datetime column as text, PostgreSQL as a datetime: an aware one is written in UTC."""
    if isinstance(value, dt.datetime):
        return (value.astimezone(dt.UTC) if value.tzinfo else value).isoformat()
    return str(value)


def as_time(value: Any) -> dt.datetime | None:
    """A datetime a Core select returned (text on SQLite, for max() of a datetime
    column), timezone-aware (a naive one is UTC); None stays None."""
    if value is None:
        return None
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


# Row ids are INTEGER columns: 32 bits on PostgreSQL.
MAX_ROW_ID = 2**31 - 1


def row_id(ref: str | int) -> int | None:
    """The row id a reference names ("42"), or None when it names no id (a uuid, "¹", or a
    number too large for the column). ``str.isdigit`` alone is not enough: it accepts
    superscripts, which ``int`` refuses, and numbers the database driver cannot bind."""
    text = str(ref)
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        return None
    value = int(text)
    return value if value <= MAX_ROW_ID else None


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores UTC; always returns timezone-aware UTC datetimes (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class EncryptedText(TypeDecorator[str]):
    """Text encrypted at rest with the secret box; the column name is the associated data."""

    impl = Text
    cache_ok = True

    def __init__(self, context: str) -> None:
        super().__init__()
        self.context = context

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else secretbox.encrypt(value, context=self.context)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else secretbox.decrypt(value, context=self.context)


def encrypted(context: str, **field: Any) -> Any:
    """A text field encrypted at rest (NULL only where its annotation allows None);
    ``context``, its ``table.column``, is the associated data of every stored value."""
    return Field(sa_type=EncryptedText(context), **field)
