"""A message as a source hands it over, and what became of it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# where a source should put the message once its outcome is committed
PROCESSED, QUARANTINE, RECEIPTS = "processed", "quarantine", "receipts"
# outcomes whose message belongs elsewhere than the processed folder
FOLDER_OF_OUTCOME = {
    "quarantine": QUARANTINE,
    "too_large": QUARANTINE,
    "pec_receipt_unmatched": RECEIPTS,
}


class TemporaryFailure(Exception):
    """Could not store the message now (database unreachable...): leave it and retry."""


@dataclass(frozen=True)
class InboundItem:
    raw: bytes
    mailbox: str  # configured mailbox name, or "deliver"
    uidvalidity: int | None = None
    uid: int | None = None


@dataclass(frozen=True)
class IngestResult:
    outcome: str
    folder: str  # PROCESSED or QUARANTINE
    ticket_number: str | None = None
    duplicate: bool = False
    detail: str | None = None


_BODY_SPLIT = re.compile(rb"\r?\n\r?\n")
_MSGID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.I | re.M)


def dedupe_key(raw: bytes) -> str:
    """Same Message-ID and same content => same key, whatever trace headers were added
    on the way (Return-Path, Delivered-To, Received)."""
    parts = _BODY_SPLIT.split(raw, maxsplit=1)
    m = _MSGID.search(parts[0])
    if m is None:
        return hashlib.sha256(raw).hexdigest()
    mid = b" ".join(m.group(1).split())
    body = parts[1] if len(parts) > 1 else b""
    return hashlib.sha256(mid + b"\0" + hashlib.sha256(body).digest()).hexdigest()
