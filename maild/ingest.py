"""Ingestion: one raw message in, its effects committed exactly once.

source -> parse -> classify -> act, all of "act" in one database transaction together with
the record of the message (mailbox, UIDVALIDITY, UID, dedupe key). Sources move a message
out of the inbox only after that commit, so a crash at any point is repaired by processing
the inbox again: a recorded message is recognised and only moved.
"""

from __future__ import annotations

import traceback
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
from maild.classify import Decision, Rule, classify
from maild.clock import Clock, SystemClock
from maild.config import Config
from maild.db import Database
from maild.inbound import (
    FOLDER_OF_OUTCOME,
    PROCESSED,
    QUARANTINE,
    RECEIPTS,
    InboundItem,
    IngestResult,
    TemporaryFailure,
    dedupe_key,
)
from maild.log import get_logger
from maild.message import ParsedMessage
from maild.models import InboundMessage, Ticket
from maild.notify import Notifier, Outgoing
from maild.prepare import FAILED, NOT_A_MESSAGE, TOO_LARGE, Prepared, prepare
from maild.tickets import add_inbound_article

log = get_logger("maild.ingest")

ACK_WINDOW = timedelta(hours=1)  # the per-sender acknowledgement limit counts over this


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


_Job = tuple[InboundItem, Prepared]


def _uid_of(item: InboundItem) -> tuple[str, int | None, int] | None:
    return None if item.uid is None else (item.mailbox, item.uidvalidity, item.uid)


def _is_temporary(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


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
            part = list(items[start : start + self.batch_size])
            done = self.ingest_prepared(part, self.prepare(part), stop)
            results += done
            if len(done) < len(part):
                break
        return results

    def prepare(self, items: Sequence[InboundItem]) -> list[Prepared]:
        """The parse stage of `items` (maild.prepare), here in this process."""
        return [prepare(item, self.rt.cfg, self.rt.blobs) for item in items]

    def ingest_prepared(
        self,
        items: Sequence[InboundItem],
        prepared: Sequence[Prepared],
        stop: Callable[[], bool] | None = None,
    ) -> list[IngestResult]:
        """The rest of ingestion, for messages through the parse stage: runs of ordinary
        messages share a transaction, the others go one by one."""
        jobs = list(zip(items, prepared, strict=True))
        results: list[IngestResult] = []
        pos = 0
        while pos < len(jobs):
            if stop is not None and stop() and results:  # the one in hand is finished
                break
            if jobs[pos][1].special is not None:
                results.append(self._single(jobs[pos]))
                pos += 1
                continue
            end = pos
            while end < len(jobs) and jobs[end][1].special is None:
                end += 1
            run = jobs[pos:end]
            done = self._run(run, stop)
            results += done
            pos += len(done)
            if len(done) < len(run):
                break  # stopped half-way
        return results

    # -- steps --------------------------------------------------------------------------

    def _run(self, run: list[_Job], stop: Callable[[], bool] | None) -> list[IngestResult]:
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
        for job in run:
            if results and stop is not None and stop():
                break
            results.append(self._single(job))
        return results

    def _single(self, job: _Job) -> IngestResult:
        """One message in its own transaction, and what becomes of it when that fails."""
        item, p = job
        key = p.key
        try:
            if p.special == TOO_LARGE:
                return self._known(item, key) or self._too_large(item, key)
            if p.special == NOT_A_MESSAGE:
                return self._known(item, key) or self._quarantine(
                    item, key, f"not an e-mail message: {p.error}"
                )
            if p.special == FAILED:
                return self._failed(item, key, p.error or "?", p.trace)
            return self._transaction([job], None)[0]
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
            trace = "".join(traceback.format_exception(exc))
            return self._failed(item, key, f"{type(exc).__name__}: {exc}", trace)

    def _failed(self, item: InboundItem, key: str, error: str, trace: str | None) -> IngestResult:
        try:  # recorded before (parsing now fails where it once worked): just move it
            known = self._known(item, key)
        except Exception as exc2:
            raise TemporaryFailure(str(exc2)) from exc2
        if known is not None:
            return known
        log.error("message_failed", mailbox=item.mailbox, uid=item.uid, error=error, trace=trace)
        return self._quarantine(item, key, error)

    def _transaction(self, run: list[_Job], stop: Callable[[], bool] | None) -> list[IngestResult]:
        done: list[tuple[_Job, IngestResult]] = []
        with self.rt.db.transaction() as session:
            now = self.rt.clock.now()
            known = self._known_many(session, run)
            batch = batch_of(session)
            msgs = [p.msg for _, p in run]
            batch.prefetch_refs(
                session, (i for m in msgs for i in (m.message_id, *m.in_reply_to, *m.references))
            )
            batch.load_tickets(session)
            batch.prefetch_rates(session, ["ack"], (m.sender.email for m in msgs), now - ACK_WINDOW)
            for job in run:
                if done and stop is not None and stop():
                    break
                item, p = job
                result = known.get(p.key) or known.get(_uid_of(item))
                if result is None:
                    result = self._act(session, item, p)
                    known[p.key] = IngestResult(
                        result.outcome, result.folder, duplicate=True, detail="already recorded"
                    )
                done.append((job, result))
        for (item, p), result in done:
            if not result.duplicate:
                log.info(
                    "message_ingested",
                    outcome=result.outcome,
                    ticket=result.ticket_number,
                    message_id=p.msg.message_id,
                    sender=p.msg.sender.email,
                    mailbox=item.mailbox,
                    uid=item.uid,
                )
        return [r for _, r in done]

    def _act(self, session: Session, item: InboundItem, p: Prepared) -> IngestResult:
        msg = p.msg
        ctx = Context(self.rt, session, self.rt.clock.now(), p.raw_sha256, item)
        decision = classify(ctx, msg, self.rules)
        outcome, ticket = self.handlers[decision.route](ctx, msg, decision)
        self._record(ctx, p.key, msg, outcome, ticket, decision.reason)
        folder = FOLDER_OF_OUTCOME.get(outcome, PROCESSED)
        number = ticket.number if ticket is not None else None
        return IngestResult(outcome, folder, number, detail=decision.reason or None)

    def _known_many(self, session: Session, run: list[_Job]) -> dict:
        """Outcomes of the messages of `run` recorded before, by dedupe key and by UID."""
        keys = [p.key for _, p in run]
        cond = InboundMessage.dedupe_key.in_(keys)
        by_box: dict[tuple[str, int | None], list[int]] = {}
        for item, _ in run:
            if item.uid is not None:
                by_box.setdefault((item.mailbox, item.uidvalidity), []).append(item.uid)
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
                        attachments=[("messaggio-originale.eml", "message/rfc822", raw_sha)],
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
    "FOLDER_OF_OUTCOME",
    "PROCESSED",
    "QUARANTINE",
    "RECEIPTS",
    "IngestResult",
    "Context",
    "Decision",
    "InboundItem",
    "IngestResult",
    "Ingestor",
    "Runtime",
    "TemporaryFailure",
    "dedupe_key",
]
