"""The parse stage: a raw message read and stored, everything that needs no database.

Parsing, opening PEC envelopes, the classifiers' facts (maild.facts) and the files under
state_dir (the original, its attachments) depend on the message alone. They are done
here, for a run of messages, before ingestion's transaction (maild.ingest), in the
daemon's process or in a process of its own (maild.parse_process): the result is a
lightened message, cheap to hand over.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from maild import facts
from maild.blobs import BlobStore
from maild.classify import preprocess
from maild.config import Config
from maild.inbound import InboundItem, TemporaryFailure, dedupe_key
from maild.message import ParsedMessage
from maild.parse import NotAMessage, parse_message

TOO_LARGE, NOT_A_MESSAGE, FAILED = "too_large", "not_a_message", "failed"


@dataclass(slots=True)
class Prepared:
    key: str  # maild.ingest.dedupe_key
    msg: ParsedMessage | None = None  # lightened (see ParsedMessage.lighten)
    raw_sha256: str | None = None  # the original, stored
    # why the message cannot join a run: too large, not a message, or unreadable
    special: str | None = None
    error: str | None = None  # for not_a_message and failed: what went wrong
    trace: str | None = None  # for failed: where


def prepare(item: InboundItem, cfg: Config, blobs: BlobStore) -> Prepared:
    """Raises TemporaryFailure when the files cannot be written now (the disk is full)."""
    key = dedupe_key(item.raw)
    if len(item.raw) > cfg.service.max_message_bytes:
        return Prepared(key, special=TOO_LARGE)
    try:
        msg = preprocess(parse_message(item.raw))
        facts.read_all(msg, cfg)
    except NotAMessage as exc:
        return Prepared(key, special=NOT_A_MESSAGE, error=str(exc))
    except Exception as exc:  # a parser bug: this message is quarantined, not its run
        return Prepared(
            key, special=FAILED, error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()
        )
    try:
        raw_sha = blobs.put(item.raw)
        for att in msg.attachments:
            att.sha256 = att.sha256 or blobs.put(att.data)
    except OSError as exc:
        raise TemporaryFailure(f"cannot store the message under state_dir: {exc}") from exc
    return Prepared(key, msg.lighten(), raw_sha)
