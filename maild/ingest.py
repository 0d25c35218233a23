"""Ingestion: one raw message in, its effects committed exactly once.

source -> parse -> classify -> act, all of "act" in one database transaction together with
the record of the message (mailbox, UIDVALIDITY, UID, dedupe key). Sources move a message
out of the inbox only after that commit, so a crash at any point is repaired by processing
the inbox again: a recorded message is recognised and only moved.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from maild.batch import INBOUND, batch_of
from maild.blobs import BlobStore
from maild.classify import Decision, Rule, classify, preprocess
from maild.clock import Clock, SystemClock
from maild.config import Config
from maild.db import Database
from maild.log import get_logger
from maild.message import ParsedMessage
from maild.models import InboundMessage, Ticket
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


ACK_WINDOW = timedelta(hours=1)  # the per-sender acknowledgement limit counts over this


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
        blobs = BlobStore(cfg.service.state_dir / "blobs")
        return cls(
            cfg=cfg,
            db=db or Database(cfg.database_url),
            blobs=blobs,
            notifier=Notifier(cfg, blobs),
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
    ) -> None:
        """This message on `ticket`, with its attachments and the raw original."""
        add_inbound_article(
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


def _uid_of(item: InboundItem) -> tuple[str, int | None, int] | None:
    return None if item.uid is None else (item.mailbox, item.uidvalidity, item.uid)


def _is_temporary(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


@dataclass
class _Prepared:
    """A message read before its transaction: parsing needs no database."""

    item: InboundItem
    key: str
    msg: ParsedMessage | None = None
    # why the message cannot join a batch: it is too large, not a message, or unreadable
    special: str | None = None
    error: Exception | None = None


class Ingestor:
    # messages per transaction: a commit per message cost more than the rest of the work;
    # a bad message costs its batch one retry, message by message
    batch_size = 50

    def __init__(self, rt: Runtime, rules: list[Rule] | None = None) -> None:
        self.rt = rt
        self.rules = rules
        from maild.handlers import all_handlers

        self.handlers = all_handlers()

    # -- public -------------------------------------------------------------------------

    def ingest(self, item: InboundItem) -> IngestResult:
        """Process one message; raises TemporaryFailure when it must be retried later."""
        return self.ingest_batch([item])[0]

    def ingest_batch(
        self, items: Sequence[InboundItem], stop: Callable[[], bool] | None = None
    ) -> list[IngestResult]:
        """Process `items` in order, `batch_size` to a transaction. Returns the results of
        the messages handled: all of them, or those before `stop()` became true (checked
        between messages, so the one in hand is finished and committed).

        Raises TemporaryFailure when the database cannot take them now; what was committed
        before stays committed, and is recognised when the messages come again."""
        results: list[IngestResult] = []
        for start in range(0, len(items), self.batch_size):
            if stop is not None and stop():
                break
            prepared = [self._prepare(i) for i in items[start : start + self.batch_size]]
            done = self._prepared(prepared, stop)
            results += done
            if len(done) < len(prepared):
                break
        return results

    # -- steps --------------------------------------------------------------------------

    def _prepare(self, item: InboundItem) -> _Prepared:
        key = dedupe_key(item.raw)
        if len(item.raw) > self.rt.cfg.service.max_message_bytes:
            return _Prepared(item, key, special="too_large")
        try:
            return _Prepared(item, key, preprocess(parse_message(item.raw)))
        except NotAMessage as exc:
            return _Prepared(item, key, special="not_a_message", error=exc)
        except Exception as exc:  # a parser bug: this message is quarantined, not the batch
            return _Prepared(item, key, special="failed", error=exc)

    def _prepared(
        self, prepared: list[_Prepared], stop: Callable[[], bool] | None
    ) -> list[IngestResult]:
        """Runs of ordinary messages share a transaction; the others go one by one."""
        results: list[IngestResult] = []
        pos = 0
        while pos < len(prepared):
            if results and stop is not None and stop():
                break
            if prepared[pos].special is not None:
                results.append(self._single(prepared[pos]))
                pos += 1
                continue
            end = pos
            while end < len(prepared) and prepared[end].special is None:
                end += 1
            run = prepared[pos:end]
            done = self._run(run, stop)
            results += done
            pos += len(done)
            if len(done) < len(run):
                break  # stopped half-way
        return results

    def _run(self, run: list[_Prepared], stop: Callable[[], bool] | None) -> list[IngestResult]:
        """Ordinary messages in one transaction; if any fails, each in one of its own."""
        if len(run) == 1:
            return [self._single(run[0])]
        try:
            return self._transaction(run, stop)
        except TemporaryFailure:
            raise
        except Exception as exc:
            if _is_temporary(exc):
                raise TemporaryFailure(str(exc)) from exc
            log.info("batch_retried_one_by_one", messages=len(run), error=repr(exc)[:300])
        results: list[IngestResult] = []
        for p in run:
            if results and stop is not None and stop():
                break
            results.append(self._single(p))
        return results

    def _single(self, p: _Prepared) -> IngestResult:
        """One message in its own transaction, and what becomes of it when that fails."""
        item, key = p.item, p.key
        try:
            if p.special == "too_large":
                return self._known(item, key) or self._too_large(item, key)
            if p.special == "not_a_message":
                return self._known(item, key) or self._quarantine(
                    item, key, f"not an e-mail message: {p.error}"
                )
            if p.special == "failed":
                raise p.error
            return self._transaction([p], None)[0]
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
            log.error(
                "message_failed",
                mailbox=item.mailbox,
                uid=item.uid,
                exc_info=exc,
            )
            return self._quarantine(item, key, f"{type(exc).__name__}: {exc}")

    def _transaction(
        self, run: list[_Prepared], stop: Callable[[], bool] | None
    ) -> list[IngestResult]:
        done: list[tuple[_Prepared, IngestResult]] = []
        with self.rt.db.transaction() as session:
            now = self.rt.clock.now()
            known = self._known_many(session, run)
            batch = batch_of(session)
            batch.prefetch_refs(
                session,
                (i for p in run for i in (p.msg.message_id, *p.msg.in_reply_to, *p.msg.references)),
            )
            batch.load_tickets(session)
            batch.prefetch_rates(
                session, ["ack"], (p.msg.sender.email for p in run), now - ACK_WINDOW
            )
            for p in run:
                if done and stop is not None and stop():
                    break
                result = known.get(p.key) or known.get(_uid_of(p.item))
                if result is None:
                    result = self._act(session, p)
                    known[p.key] = IngestResult(
                        result.outcome, result.folder, duplicate=True, detail="already recorded"
                    )
                done.append((p, result))
        for p, result in done:
            if not result.duplicate:
                log.info(
                    "message_ingested",
                    outcome=result.outcome,
                    ticket=result.ticket_number,
                    message_id=p.msg.message_id,
                    sender=p.msg.sender.email,
                    mailbox=p.item.mailbox,
                    uid=p.item.uid,
                )
        return [r for _, r in done]

    def _act(self, session: Session, p: _Prepared) -> IngestResult:
        msg = p.msg
        raw_sha = self.rt.blobs.put(p.item.raw)
        ctx = Context(self.rt, session, self.rt.clock.now(), raw_sha, p.item)
        decision = classify(ctx, msg, self.rules)
        outcome, ticket = self.handlers[decision.route](ctx, msg, decision)
        self._record(ctx, p.key, msg, outcome, ticket, decision.reason)
        folder = FOLDER_OF_OUTCOME.get(outcome, PROCESSED)
        number = ticket.number if ticket is not None else None
        return IngestResult(outcome, folder, number, detail=decision.reason or None)

    def _known_many(self, session: Session, run: list[_Prepared]) -> dict:
        """Outcomes of the messages of `run` recorded before, by dedupe key and by UID."""
        keys = [p.key for p in run]
        cond = InboundMessage.dedupe_key.in_(keys)
        by_box: dict[tuple[str, int | None], list[int]] = {}
        for p in run:
            if p.item.uid is not None:
                by_box.setdefault((p.item.mailbox, p.item.uidvalidity), []).append(p.item.uid)
        for (mailbox, uidvalidity), uids in by_box.items():
            cond = or_(
                cond,
                and_(
                    InboundMessage.mailbox == mailbox,
                    InboundMessage.uidvalidity == uidvalidity,
                    InboundMessage.uid.in_(uids),
                ),
            )
        rows = session.execute(
            select(
                InboundMessage.outcome,
                InboundMessage.dedupe_key,
                InboundMessage.mailbox,
                InboundMessage.uidvalidity,
                InboundMessage.uid,
            ).where(cond)
        ).all()
        known: dict = {}
        for outcome, key, mailbox, uidvalidity, uid in rows:
            folder = FOLDER_OF_OUTCOME.get(outcome, PROCESSED)
            result = IngestResult(outcome, folder, duplicate=True, detail="already recorded")
            known[key] = result
            if uid is not None:
                known[(mailbox, uidvalidity, uid)] = result
        return known

    def _known(self, item: InboundItem, key: str) -> IngestResult | None:
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
        with self.rt.db.session() as s:
            outcome = s.scalar(select(InboundMessage.outcome).where(cond).limit(1))
        if outcome is None:
            return None
        folder = FOLDER_OF_OUTCOME.get(outcome, PROCESSED)
        return IngestResult(outcome, folder, duplicate=True, detail="already recorded")

    def _record(
        self,
        ctx: Context,
        key: str,
        msg: ParsedMessage | None,
        outcome: str,
        ticket: Ticket | None,
        detail: str | None,
    ) -> None:
        batch_of(ctx.session).add(
            INBOUND,
            {
                "dedupe_key": key,
                "mailbox": ctx.item.mailbox,
                "uidvalidity": ctx.item.uidvalidity,
                "uid": ctx.item.uid,
                "message_id": msg.message_id if msg else None,
                "raw_sha256": ctx.raw_sha256,
                "size": len(ctx.item.raw),
                "received_at": ctx.now,
                "outcome": outcome,
                "ticket_id": None if ticket is None else ticket.id or ticket,
                "detail": detail or None,
            },
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
    since = ctx.now - ACK_WINDOW
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
