"""winmail.dat (application/ms-tnef): the files Outlook wraps inside it.

Outlook in "Rich Text" mode sends attachments inside a TNEF blob that no other client
can open; operators need the real files (e.g. the PDF of a scan report).
"""

from __future__ import annotations

import logging
import mimetypes

from tnefparse import properties
from tnefparse.tnef import TNEF

from maild.message import Attachment

log = logging.getLogger(__name__)

_MAX_DEPTH = 3  # embedded messages inside embedded messages: enough for real mail


def _text(value: object, codepage: str | None) -> str:
    if isinstance(value, bytes):
        for encoding in ("utf-8", codepage or "cp1252"):
            try:
                return value.decode(encoding).strip("\x00")
            except (UnicodeDecodeError, LookupError):
                continue
        return value.decode("cp1252", "replace").strip("\x00")
    return str(value or "").strip("\x00")


def _mapi(attachment: object, name: int) -> object:
    for prop in getattr(attachment, "mapi_attrs", []):
        if prop.name == name:
            return prop.data
    return None


def _collect(tnef: TNEF, depth: int) -> list[Attachment]:
    from maild.parse import safe_filename  # parse imports this module

    found: list[Attachment] = []
    for item in tnef.attachments:
        embedded = getattr(item, "embed", None)
        if embedded is not None and depth < _MAX_DEPTH:
            found.extend(_collect(embedded, depth + 1))
            continue
        data = item.data if isinstance(item.data, bytes) else b""
        if not data:
            continue
        name = _text(_mapi(item, properties.MAPI_ATTACH_LONG_FILENAME), tnef.codepage)
        name = name or _text(item._name, tnef.codepage)
        mime = _text(_mapi(item, properties.MAPI_ATTACH_MIME_TAG), tnef.codepage)
        if "/" not in mime:
            mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        mime = mime.lower()
        found.append(Attachment(safe_filename(name, mime, len(found) + 1), mime, data))
    return found


def extract_tnef(data: bytes) -> list[Attachment]:
    """The files inside a TNEF blob; [] when it is broken or holds none (never raises)."""
    try:
        return _collect(TNEF(data, do_checksum=False), 0)
    except Exception as exc:  # noqa: BLE001 - any malformed blob: keep winmail.dat only
        log.info("unreadable TNEF attachment: %s", exc)
        return []
