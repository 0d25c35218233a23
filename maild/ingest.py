"""Ingestion: one raw message in, its effects committed exactly once.

source -> parse -> classify -> act, all of "act" in one database transaction together with
the record of the message (mailbox, UIDVALIDITY, UID, dedupe key). Sources move a message
out of the inbox only after that commit, so a crash at any point is repaired by processing
the inbox again: a recorded message is recognised and only moved.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from maild.blobs import BlobStore
from maild.classify import Decision, Rule, classify, preprocess
from maild.clock import Clock, SystemClock
from maild.config import Config
from maild.db import Database
from maild.log import get_logger
from maild.message import ParsedMessage
from maild.models import Article, InboundMessage, Ticket
from maild.notify import Notifier, Outgoing
from maild.parse import NotAMessage, parse_message
from maild.tickets import add_inbound_article

log = get_logger("maild.ingest")

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


@dataclass
class Runtime:
    """What every stage needs: configuration, database, files, mail templates and time."""

    cfg: Config
    db: Database
    blobs: BlobStore
    notifier: Notifier
    clock: Clock

    @classmethod
    def create(cls, cfg: Config, db: Database | None = None, clock: Clock | None = None):
        return cls(
            cfg=cfg,
            db=db or Database(cfg.database_url),
            blobs=BlobStore(cfg.service.state_dir / "blobs"),
            notifier=Notifier(cfg),
            clock=clock or SystemClock(),
        )


@dataclass
class Context:
    """One message's unit of work."""

    rt: Runtime
    session: Session
    now: datetime
    raw_sha256: str
    item: InboundItem

    @property
    def cfg(self) -> Config:
        return self.rt.cfg

    def enqueue(self, out: Outgoing) -> None:
        self.rt.notifier.enqueue(self.session, out, self.now)

    def store_article(
        self,
        ticket: Ticket,
        msg: ParsedMessage,
        body_text: str,
        *,
        internal: bool = False,
        direction: str = "in",
    ) -> Article:
        """This message on `ticket`, with its attachments and the raw original."""
        return add_inbound_article(
            self.session,
            self.rt.blobs,
            ticket,
            msg,
            body_text=body_text,
            raw_sha256=self.raw_sha256,
            now=self.now,
            internal=internal,
            direction=direction,
        )


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


def _is_temporary(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class Ingestor:
    def __init__(self, rt: Runtime, rules: list[Rule] | None = None) -> None:
        self.rt = rt
        self.rules = rules
        from maild.handlers import all_handlers

        self.handlers = all_handlers()

    # -- public -------------------------------------------------------------------------

    def ingest(self, item: InboundItem) -> IngestResult:
        """Process one message; raises TemporaryFailure when it must be retried later."""
        key = dedupe_key(item.raw)
        try:
            # a message seen before is recognised inside _process's transaction: one
            # transaction per message, not two (a duplicate is only parsed for nothing)
            return self._process(item, key)
        except TemporaryFailure:
            raise
        except IntegrityError:
            # a concurrent worker recorded the same message first
            known = self._known(item, key)
            if known is not None:
                return known
            raise TemporaryFailure("integrity error without a recorded message") from None
        except Exception as exc:  # a bad message must never block the ones behind it
            if _is_temporary(exc):
                raise TemporaryFailure(str(exc)) from exc
            try:  # recorded before (parsing now fails where it once worked): just move it
                known = self._known(item, key)
            except Exception as exc2:
                raise TemporaryFailure(str(exc2)) from exc2
            if known is not None:
                return known
            log.exception("message_failed", mailbox=item.mailbox, uid=item.uid)
            return self._quarantine(item, key, f"{type(exc).__name__}: {exc}")

    # -- steps --------------------------------------------------------------------------

    def _known(self, item: InboundItem, key: str, session: Session | None = None):
        """The outcome of this message if it was recorded already (IngestResult or None)."""
        cond = InboundMessage.dedupe_key == key
        if item.uid is not None:
            cond = or_(
                cond,
                and_(
                    InboundMessage.mailbox == item.mailbox,
                    InboundMessage.uidvalidity == item.uidvalidity,
                    InboundMessage.uid == item.uid,
                ),
            )
        query = select(InboundMessage.outcome).where(cond).limit(1)
        if session is None:
            with self.rt.db.session() as s:
                outcome = s.scalar(query)
        else:
            outcome = session.scalar(query)
        if outcome is None:
            return None
        folder = FOLDER_OF_OUTCOME.get(outcome, PROCESSED)
        return IngestResult(outcome, folder, duplicate=True, detail="already recorded")

    def _process(self, item: InboundItem, key: str) -> IngestResult:
        cfg = self.rt.cfg
        if len(item.raw) > cfg.service.max_message_bytes:
            return self._known(item, key) or self._too_large(item, key)
        try:
            msg = parse_message(item.raw)
        except NotAMessage as exc:
            return self._known(item, key) or self._quarantine(
                item, key, f"not an e-mail message: {exc}"
            )
        msg = preprocess(msg)
        raw_sha = self.rt.blobs.put(item.raw)
        with self.rt.db.transaction() as session:
            known = self._known(item, key, session)
            if known is not None:
                return known
            ctx = Context(self.rt, session, self.rt.clock.now(), raw_sha, item)
            decision = classify(ctx, msg, self.rules)
            outcome, ticket = self.handlers[decision.route](ctx, msg, decision)
            self._record(ctx, key, msg, outcome, ticket.id if ticket else None, decision.reason)
            number = ticket.number if ticket is not None else None
        log.info(
            "message_ingested",
            outcome=outcome,
            ticket=number,
            message_id=msg.message_id,
            sender=msg.sender.email,
            mailbox=item.mailbox,
            uid=item.uid,
        )
        folder = FOLDER_OF_OUTCOME.get(outcome, PROCESSED)
        return IngestResult(outcome, folder, number, detail=decision.reason or None)

    def _record(
        self,
        ctx: Context,
        key: str,
        msg: ParsedMessage | None,
        outcome: str,
        ticket_id: int | None,
        detail: str | None,
    ) -> None:
        ctx.session.add(
            InboundMessage(
                dedupe_key=key,
                mailbox=ctx.item.mailbox,
                uidvalidity=ctx.item.uidvalidity,
                uid=ctx.item.uid,
                message_id=msg.message_id if msg else None,
                raw_sha256=ctx.raw_sha256,
                size=len(ctx.item.raw),
                received_at=ctx.now,
                outcome=outcome,
                ticket_id=ticket_id,
                detail=detail or None,
            )
        )

    def _quarantine(self, item: InboundItem, key: str, reason: str) -> IngestResult:
        """Record the failure and alert the operators, once; the source moves it aside."""
        log.warning("message_quarantined", reason=reason, mailbox=item.mailbox, uid=item.uid)
        try:
            raw_sha = self.rt.blobs.put(item.raw)
            with self.rt.db.transaction() as session:
                ctx = Context(self.rt, session, self.rt.clock.now(), raw_sha, item)
                sender, subject = _header_summary(item.raw)
                text, _ = self._alert_text(ctx, reason, sender, subject)
                ctx.enqueue(
                    Outgoing(
                        kind="alert",
                        to=[self.rt.cfg.service.operators_address],
                        subject=f"maild: messaggio in quarantena ({subject or 'senza oggetto'})",
                        text=text,
                        auto_submitted="auto-generated",
                        attachments=[("messaggio-originale.eml", "message/rfc822", item.raw)],
                    )
                )
                self._record(ctx, key, None, "quarantine", None, reason)
        except IntegrityError:
            known = self._known(item, key)
            if known is not None:
                return known
            raise TemporaryFailure("could not record quarantine") from None
        except Exception as exc:
            raise TemporaryFailure(f"could not record quarantine: {exc}") from exc
        return IngestResult("quarantine", QUARANTINE, detail=reason)

    def _alert_text(self, ctx: Context, reason: str, sender: str, subject: str):
        _, text, html = self.rt.notifier.render(
            "quarantine_alert",
            reason=reason,
            sender=sender,
            subject=subject,
            mailbox=ctx.item.mailbox,
            uid=ctx.item.uid,
            now=ctx.now,
        )
        return text, html

    def _too_large(self, item: InboundItem, key: str) -> IngestResult:
        cfg = self.rt.cfg
        sender, subject = _header_summary(item.raw)
        raw_sha = self.rt.blobs.put(item.raw)
        limit_mb = cfg.service.max_message_bytes / (1024 * 1024)
        with self.rt.db.transaction() as session:
            ctx = Context(self.rt, session, self.rt.clock.now(), raw_sha, item)
            if sender and sender not in cfg.service.own_addresses and _may_answer(item.raw):
                subj, text, html = self.rt.notifier.render(
                    "too_large",
                    subject=subject,
                    size_mb=round(len(item.raw) / (1024 * 1024), 1),
                    limit_mb=round(limit_mb, 1),
                )
                ctx.enqueue(
                    Outgoing(
                        kind="too_large",
                        to=[sender],
                        subject=subj,
                        text=text,
                        html=html,
                        auto_submitted="auto-replied",
                        rate_key=sender,
                    )
                )
            text, _ = self._alert_text(ctx, f"message over {limit_mb:.0f} MB", sender, subject)
            ctx.enqueue(
                Outgoing(
                    kind="alert",
                    to=[cfg.service.operators_address],
                    subject=f"maild: messaggio troppo grande da {sender or 'mittente ignoto'}",
                    text=text,
                    auto_submitted="auto-generated",
                )
            )
            self._record(ctx, key, None, "too_large", None, f"{len(item.raw)} bytes")
        return IngestResult("too_large", QUARANTINE, detail=f"{len(item.raw)} bytes")


def _header_summary(raw: bytes) -> tuple[str, str]:
    """Sender and subject from the header alone: good enough for alerts about bad mail."""
    from maild.parse import decode_header_value

    try:
        head = BytesHeaderParser(policy=compat32).parsebytes(raw[:65536])
        addrs = getaddresses([decode_header_value(v) for v in head.get_all("From", [])])
        sender = addrs[0][1].lower() if addrs else ""
        return sender, decode_header_value(head.get("Subject", ""))
    except Exception:
        return "", ""


def _may_answer(raw: bytes) -> bool:
    """No polite reply to automatic mail, judged from the header alone."""
    head = BytesHeaderParser(policy=compat32).parsebytes(raw[:65536])
    auto = head.get("Auto-Submitted", "no").strip().lower()
    prec = head.get("Precedence", "").strip().lower()
    return auto in ("", "no") and prec not in ("bulk", "junk", "list") and "List-Id" not in head


def ack_allowed(ctx: Context, sender: str) -> bool:
    limit = ctx.cfg.service.ack_rate_limit
    if limit == 0:
        return False
    since = ctx.now - timedelta(hours=1)
    return ctx.rt.notifier.recent_count(ctx.session, "ack", sender, since) < limit


__all__ = [
    "Context",
    "Decision",
    "InboundItem",
    "IngestResult",
    "Ingestor",
    "Runtime",
    "TemporaryFailure",
    "dedupe_key",
]
