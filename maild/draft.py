"""Mail as queued: what to write, as JSON; the outbox sender writes it when it sends.

Ingestion queues a mail in the transaction that causes it, but need not spend its own
time on rendering templates and encoding MIME: the draft holds the headers, the text (or
the template and a snapshot of its context), and the attachments as blobs under
state_dir. The sender process composes the bytes (maild.notify.Notifier.compose).

A snapshot keeps what templates read: an ORM row becomes a mapping of its columns, a
configuration model or dataclass a mapping of its fields, datetimes stay datetimes.
Templates read mappings as they read objects (`ticket.number`).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from functools import cache
from typing import Any

from pydantic import BaseModel
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import DeclarativeBase

_DATETIME, _DATE = "$datetime", "$date"


def _encode(value: Any) -> Any:
    """json.dumps's hook for what JSON has no type for (raises TypeError for what a
    template cannot need, such as bytes)."""
    if isinstance(value, datetime):
        return {_DATETIME: value.isoformat()}
    if isinstance(value, date):
        return {_DATE: value.isoformat()}
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, DeclarativeBase):
        # loaded columns straight from the instance's dict (no attribute machinery); one
        # not loaded yet is read the ORM's way
        loaded = value.__dict__
        return {k: loaded[k] if k in loaded else getattr(value, k) for k in _columns(type(value))}
    if isinstance(value, BaseModel):
        return value.model_dump()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise TypeError(f"a mail draft cannot hold {type(value).__name__}")


@cache
def _columns(cls: type) -> tuple[str, ...]:
    return tuple(a.key for a in sa_inspect(cls).column_attrs)


def _revive(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if _DATETIME in obj:
            return datetime.fromisoformat(obj[_DATETIME])
        if _DATE in obj:
            return date.fromisoformat(obj[_DATE])
    return obj


def dumps(draft: dict[str, Any]) -> str:
    """The draft as JSON; objects in it are snapshots of their state now."""
    return json.dumps(draft, default=_encode, ensure_ascii=False, separators=(",", ":"))


def loads(text: str) -> dict[str, Any]:
    return json.loads(text, object_hook=_revive)
