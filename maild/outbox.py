"""The outbox sender: delivers queued mail, retrying with exponential backoff.

Due rows are taken in priority order (requesters' acknowledgements before operators'
copies: maild.notify.priority_of), sent, then marked sent one by one: a kill between the
SMTP acceptance and the mark re-sends at most that one message. An SMTP outage only
delays mail: the rows wait in the table.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import aiosmtplib
from sqlalchemy import bindparam, func, or_, select, update

from maild.clock import Clock
from maild.config import Config, SmtpConfig
from maild.db import Database
from maild.journal import SentJournal, journal_path
from maild.log import get_logger
from maild.models import OutboxMessage
from maild.notify import URGENT, URGENT_KINDS, Notifier

log = get_logger("maild.outbox")
SMTP_CONNECTIONS = 4  # parallel connections to the relay while a backlog is delivered


_OUTBOX = OutboxMessage.__table__
_MARK_SENT = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("row_id"))
    .values(
        status="sent", sent_at=bindparam("now"), last_error=None, claimed_at=None, claimed_by=None
    )
)


# kinds sent strictly one at a time (see send_due)
SERIAL_KINDS = URGENT_KINDS  # requesters' replies: a kill repeats at most one of them


class PermanentError(Exception):
    """The server refused the message for good (5xx): retrying cannot help."""


class Transport(Protocol):
    async def send(self, envelope_from: str, recipients: list[str], data: bytes) -> None: ...
    async def close(self) -> None: ...


class SmtpTransport:
    """One SMTP connection, kept open between messages and reopened after errors."""

    def __init__(self, cfg: SmtpConfig) -> None:
        self.cfg = cfg
        self.client: aiosmtplib.SMTP | None = None

    async def _connect(self) -> aiosmtplib.SMTP:
        cfg = self.cfg
        client = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.effective_port,
            use_tls=cfg.security == "ssl",
            start_tls=cfg.security == "starttls",
            timeout=cfg.timeout,
            tls_context=(
                ssl.create_default_context(cafile=str(cfg.tls_ca_file) if cfg.tls_ca_file else None)
                if cfg.security != "none"
                else None
            ),
        )
        await client.connect()
        if cfg.username and cfg.password is not None:
            await client.login(cfg.username, cfg.password.get_secret_value())
        return client

    async def send(self, envelope_from: str, recipients: list[str], data: bytes) -> None:
        if self.client is None or not self.client.is_connected:
            self.client = await self._connect()
        try:
            errors, _ = await self.client.sendmail(envelope_from, recipients, data)
        except aiosmtplib.SMTPRecipientsRefused as e:
            if all(r.code >= 500 for r in e.recipients):
                raise PermanentError(str(e)) from e
            raise
        except aiosmtplib.SMTPResponseException as e:
            if e.code >= 500 and not isinstance(e, aiosmtplib.SMTPServerDisconnected):
                await self.close()
                raise PermanentError(f"{e.code} {e.message}") from e
            await self.close()
            raise
        except (aiosmtplib.SMTPException, OSError):
            await self.close()
            raise
        if errors:
            log.warning("smtp_some_recipients_refused", refused=list(errors))

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                await client.quit()
            except Exception:
                client.close()


class SmtpPool:
    """Several SMTP connections used side by side: a backlog of notifications is
    delivered in parallel instead of waiting on one server round trip after another."""

    def __init__(self, cfg: SmtpConfig, size: int = 4) -> None:
        self.parallel = size
        self.idle: list[SmtpTransport] = [SmtpTransport(cfg) for _ in range(size)]
        self.all = list(self.idle)

    async def send(self, envelope_from: str, recipients: list[str], data: bytes) -> None:
        conn = self.idle.pop()  # callers run at most `parallel` sends at once
        try:
            await conn.send(envelope_from, recipients, data)
        finally:
            self.idle.append(conn)

    async def close(self) -> None:
        for conn in self.all:
            await conn.close()


class MaildirTransport:
    """Writes each mail into a Maildir's new/ folder: the embedded default and tests."""

    def __init__(self, path: Path) -> None:
        self.path = path
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        self._n = 0

    async def send(self, envelope_from: str, recipients: list[str], data: bytes) -> None:
        self._n += 1
        name = f"{time.time():.6f}.{os.getpid()}_{self._n}.{socket.gethostname()}"
        tmp = self.path / "tmp" / name
        header = f"X-Maild-Envelope-To: {', '.join(recipients)}\r\n".encode()
        tmp.write_bytes(header + data)
        os.replace(tmp, self.path / "new" / name)

    async def close(self) -> None:
        return None


def make_transport(cfg: SmtpConfig) -> Transport:
    if cfg.transport == "maildir":
        assert cfg.path is not None
        return MaildirTransport(cfg.path)
    return SmtpPool(cfg, SMTP_CONNECTIONS)


def lease_owner(cfg: Config) -> str:
    """The name under which this instance leases outbox rows: the same across its
    restarts (host and state directory), different for another instance."""
    return f"{socket.gethostname()}:{cfg.service.state_dir}"[:300]


def release_leases(db: Database, clock: Clock, owner: str | None = None) -> None:
    """At start: our previous run's leases are void (it was killed, or it stopped). With
    `owner`, only the leases that name it (PostgreSQL, where other instances may hold
    some); without, all (SQLite means a single instance)."""
    held = (_OUTBOX.c.status == "pending", _OUTBOX.c.claimed_at.is_not(None))
    if owner is not None:
        held += (_OUTBOX.c.claimed_by == owner,)
    with db.engine.begin() as c:
        c.execute(
            update(_OUTBOX)
            .where(*held)
            .values(next_attempt_at=clock.now(), claimed_at=None, claimed_by=None)
        )


@dataclass(frozen=True, slots=True)
class Mail:
    """An outbox row as the sender needs it."""

    id: int
    kind: str
    message_id: str
    envelope_from: str
    recipients: list[str]
    data: bytes | None  # None: to be composed from the draft
    attempts: int
    priority: int
    draft: str | None


_MAIL_COLUMNS = (
    _OUTBOX.c.id,
    _OUTBOX.c.kind,
    _OUTBOX.c.message_id,
    _OUTBOX.c.envelope_from,
    _OUTBOX.c.recipients,
    _OUTBOX.c.data,
    _OUTBOX.c.attempts,
    _OUTBOX.c.priority,
    _OUTBOX.c.draft,
)


class OutboxSender:
    """Claims due rows (requesters' mail first), sends them, records the outcome.

    On PostgreSQL rows are leased (`FOR UPDATE SKIP LOCKED`, several senders share the
    work) and marked sent one by one. On SQLite there is one sender per database: nothing
    to lease, and acceptances go to the SentJournal (maild.journal), folded into the
    outbox table in bulk, so sending never waits for ingestion's write lock.
    """

    def __init__(
        self,
        db: Database,
        transport: Transport,
        clock: Clock,
        cfg: SmtpConfig,
        notifier: Notifier | None = None,
        *,
        batch: int = 50,
        lease: timedelta = timedelta(minutes=2),
        idle_poll: float = 5.0,
        coalesce: float = 0.02,
        fold_every: float = 1.0,
        fold_at: int = 200,
        hold: float = 0.5,
        max_hold: timedelta = timedelta(seconds=30),
        monotonic: Callable[[], float] = time.monotonic,
        owner: str | None = None,
    ) -> None:
        self.db = db
        self.transport = transport
        self.clock = clock
        self.cfg = cfg
        self.notifier = notifier  # composes drafts (rows queued without bytes)
        self.batch = batch
        self.lease = lease
        self.idle_poll = idle_poll
        self.coalesce = coalesce
        self.fold_every = fold_every
        self.fold_at = fold_at
        self.hold = hold
        self.max_hold = max_hold
        self.monotonic = monotonic
        self.owner = owner  # named on the leases it takes (lease_owner)
        self._urgent_at: float | None = None  # when urgent mail was last claimed
        self.wakeup = asyncio.Event()
        self.sent = 0
        path = db.sqlite_path
        self.journal = SentJournal(journal_path(path)) if path is not None else None
        # noted in the journal, still "pending" in the outbox table: never claimed again
        self.unfolded: set[int] = set(self.journal.notes()) if self.journal else set()
        self._unmarked: dict[int, datetime] = {}  # accepted, but the mark failed
        self._folding: asyncio.Task | None = None
        self._folded_at = time.monotonic()

    def backoff(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.cfg.retry_base * 2 ** (attempts - 1), self.cfg.retry_max))

    def holding(self) -> float:
        """Seconds other mail still yields to acknowledgements (0: it does not). It does
        while they keep coming, one at least every `hold` seconds (a pace, measured on
        the monotonic clock), and for at most `max_hold` per mail (by its age)."""
        if self._urgent_at is None:
            return 0.0
        return max(0.0, self._urgent_at + self.hold - self.monotonic())

    def _due(self, now: datetime, exclude: frozenset[int]):
        """Due rows of the most urgent priority that has any. While acknowledgements are
        due a claim takes nothing else, and while they keep coming only mail held longer
        than `max_hold` joins them: an operator's copy must not delay a requester's
        acknowledgement, nor take the CPU and the connections it needs."""
        due = (_OUTBOX.c.status == "pending", _OUTBOX.c.next_attempt_at <= now)
        if exclude:
            due += (_OUTBOX.c.id.not_in(exclude),)
        if self.holding():
            due += (
                or_(
                    _OUTBOX.c.priority <= URGENT,
                    _OUTBOX.c.next_attempt_at <= now - self.max_hold,
                ),
            )
        first = select(func.min(_OUTBOX.c.priority)).where(*due).scalar_subquery()
        return (
            select(*_MAIL_COLUMNS)
            .where(*due, _OUTBOX.c.priority == first)
            .order_by(_OUTBOX.c.next_attempt_at, _OUTBOX.c.id)
            .limit(self.batch)
        )

    def claim(self, exclude: frozenset[int] = frozenset()) -> list[Mail]:
        now = self.clock.now()
        if self.journal is not None:
            with self.db.reader.connect() as c:
                rows = [Mail(*r) for r in c.execute(self._due(now, exclude))]
        else:
            with self.db.engine.begin() as c:
                due = self._due(now, exclude).with_for_update(skip_locked=True)
                rows = [Mail(*r) for r in c.execute(due)]
                if rows:
                    c.execute(
                        update(_OUTBOX)
                        .where(_OUTBOX.c.id.in_([r.id for r in rows]))
                        .values(
                            next_attempt_at=now + self.lease, claimed_at=now, claimed_by=self.owner
                        )
                    )
        if rows and rows[0].priority <= URGENT:
            self._urgent_at = self.monotonic()
        return rows

    async def _mark_sent(self, mail: Mail) -> None:
        now = self.clock.now()
        self.unfolded.add(mail.id)  # accepted: never claimed again by this sender
        try:
            if self.journal is not None:
                self.journal.record(mail.id, now)  # a small commit of its own: no waiting
                return
            await asyncio.to_thread(self._mark_sent_in_table, [{"row_id": mail.id, "now": now}])
            self.unfolded.discard(mail.id)
        except Exception as e:  # accepted, not recorded: kept here, written by the next fold
            log.error("outbox_mark_failed", outbox_id=mail.id, error=f"{type(e).__name__}: {e}")
            self._unmarked[mail.id] = now

    def _mark_sent_in_table(self, marks: list[dict]) -> None:
        # Core on a bare connection: this runs once per mail, the ORM session costs more
        # than the UPDATE itself
        with self.db.engine.begin() as c:
            c.execute(_MARK_SENT, marks)

    def _mark_failed(self, mail: Mail, error: str, permanent: bool) -> None:
        attempts = mail.attempts + 1
        dead = permanent or (self.cfg.max_attempts and attempts >= self.cfg.max_attempts)
        with self.db.engine.begin() as c:
            c.execute(
                update(_OUTBOX)
                # pending: another instance may have sent it once our lease ran out
                .where(_OUTBOX.c.id == mail.id, _OUTBOX.c.status == "pending")
                .values(
                    status="dead" if dead else "pending",
                    attempts=attempts,
                    last_error=error[:2000],
                    next_attempt_at=self.clock.now() + self.backoff(attempts),
                    claimed_at=None,
                    claimed_by=None,
                )
            )

    def compose(self, mail: Mail) -> bytes:
        if mail.data is None and self.notifier is None:
            raise ValueError("a draft but nothing to compose it with")
        return mail.data if self.notifier is None else self.notifier.wire(mail)

    async def _send_one(self, mail: Mail, data: bytes | Exception) -> Exception | None:
        """Send one row and record the outcome; returns a temporary failure, if any."""
        try:
            if isinstance(data, Exception):  # no way to write it: no retry helps
                raise PermanentError(f"cannot compose the mail: {type(data).__name__}: {data}")
            await self.transport.send(mail.envelope_from, mail.recipients, data)
        except PermanentError as e:
            log.error("outbox_refused", outbox_id=mail.id, message_id=mail.message_id, error=str(e))
            await asyncio.to_thread(self._mark_failed, mail, str(e), True)
            return None
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
            log.warning(
                "outbox_send_failed",
                outbox_id=mail.id,
                message_id=mail.message_id,
                error=error,
                attempts=mail.attempts + 1,
            )
            await asyncio.to_thread(self._mark_failed, mail, error, False)
            return e
        await self._mark_sent(mail)
        self.sent += 1
        log.info("outbox_sent", outbox_id=mail.id, kind=mail.kind, message_id=mail.message_id)
        return None

    async def send_due(self) -> int:
        """Send what is due now; returns how many were sent.

        Up to `transport.parallel` mails are in flight at once; each is marked sent on
        its own as soon as the server accepted it, so a kill re-sends at most the mails
        in flight. After a temporary failure the unsent rest of the batch is released.
        """
        rows = await asyncio.to_thread(self.claim, frozenset(self.unfolded))
        if not rows:
            return 0
        queue = list(reversed(rows))
        failures: list[Exception] = []
        before = self.sent
        renewed = [self.clock.now()]
        # acknowledgements go one at a time, sent and marked: a kill then repeats at most
        # one of them (the contract: at most one extra acknowledgement per crash)
        one_at_a_time = asyncio.Lock()

        async def worker() -> None:
            while queue and not failures:
                row = queue.pop()
                try:  # composed before its turn: the next acknowledgement is ready
                    data: bytes | Exception = self.compose(row)
                except Exception as e:
                    log.error("outbox_compose_failed", outbox_id=row.id, error=repr(e))
                    data = e
                if row.kind in SERIAL_KINDS:
                    async with one_at_a_time:
                        failure = await self._send_one(row, data)
                else:
                    failure = await self._send_one(row, data)
                if failure is not None:  # the server is unhappy: stop taking new ones
                    failures.append(failure)
                elif (
                    self.journal is None
                    and queue
                    and self.clock.now() - renewed[0] > self.lease / 2
                ):
                    # a slow relay: keep the rest of the batch ours before the lease runs
                    # out, or another instance would send them too
                    renewed[0] = self.clock.now()
                    await asyncio.to_thread(self._renew, [r.id for r in queue])

        width = max(1, min(getattr(self.transport, "parallel", 1), len(rows)))
        outcomes = await asyncio.gather(*(worker() for _ in range(width)), return_exceptions=True)
        crashed = next((o for o in outcomes if isinstance(o, BaseException)), None)
        if crashed is not None or failures:  # release the rest and retry later
            await asyncio.to_thread(self._release, [r.id for r in queue])
            raise crashed or failures[0]
        return self.sent - before

    def _renew(self, ids: list[int]) -> None:
        owner = _OUTBOX.c.claimed_by
        with self.db.engine.begin() as c:
            c.execute(
                update(_OUTBOX)
                .where(
                    _OUTBOX.c.id.in_(ids),
                    _OUTBOX.c.status == "pending",
                    owner.is_(None) if self.owner is None else owner == self.owner,
                )
                .values(next_attempt_at=self.clock.now() + self.lease)
            )

    def _release(self, ids: list[int]) -> None:
        if not ids or self.journal is not None:  # no leases on SQLite
            return
        with self.db.engine.begin() as c:
            c.execute(
                update(_OUTBOX)
                .where(_OUTBOX.c.id.in_(ids))
                .values(next_attempt_at=self.clock.now(), claimed_at=None, claimed_by=None)
            )

    def next_due(self, exclude: frozenset[int] = frozenset()) -> datetime | None:
        q = select(_OUTBOX.c.next_attempt_at).where(_OUTBOX.c.status == "pending")
        if exclude:
            q = q.where(_OUTBOX.c.id.not_in(exclude))
        with self.db.reader.connect() as c:
            return c.scalar(q.order_by(_OUTBOX.c.next_attempt_at).limit(1))

    # -- the journal, folded into the outbox table ------------------------------------------

    def fold(self, unmarked: dict[int, datetime] | None = None) -> list[int]:
        """The journal's notes, and `unmarked` (accepted mail whose mark failed), into the
        outbox table (waits for the write lock); returns the rows folded. Runs off the
        event loop."""
        notes = dict(unmarked or {})
        if self.journal is not None:
            notes.update(self.journal.notes())
        if notes:
            self._mark_sent_in_table([{"row_id": i, "now": at} for i, at in notes.items()])
            if self.journal is not None:
                self.journal.forget(list(notes))
        return list(notes)

    def _maybe_fold(self, idle: bool) -> None:
        if not self.unfolded:
            return
        if self._folding is not None and not self._folding.done():
            return
        due = time.monotonic() - self._folded_at >= self.fold_every
        if idle or due or len(self.unfolded) >= self.fold_at:
            self._folded_at = time.monotonic()
            self._folding = asyncio.ensure_future(self._fold_in_background())

    async def _fold_in_background(self) -> None:
        try:
            folded = await asyncio.to_thread(self.fold, dict(self._unmarked))
        except Exception as e:  # the notes stay in the journal: folded next time
            log.warning("outbox_fold_failed", error=f"{type(e).__name__}: {e}")
            return
        self.unfolded.difference_update(folded)
        for row_id in folded:
            self._unmarked.pop(row_id, None)

    async def _final_fold(self) -> None:
        if self._folding is not None:
            await asyncio.gather(self._folding, return_exceptions=True)
        if self.unfolded:
            await self._fold_in_background()

    async def run(self, stopping: asyncio.Event) -> None:
        failures = 0
        try:
            while not stopping.is_set():
                try:
                    n = await self.send_due()
                    failures = 0
                except Exception:
                    failures += 1
                    delay = min(self.cfg.retry_base * 2 ** (failures - 1), self.cfg.retry_max)
                    await _wait_any(stopping, self.wakeup, timeout=delay, wake_on_event=False)
                    continue
                self._maybe_fold(idle=n == 0)
                if n:
                    continue
                due = await asyncio.to_thread(self.next_due, frozenset(self.unfolded))
                now = self.clock.now()
                timeout = self.idle_poll
                if due is not None:
                    timeout = max(0.0, min(timeout, (due - now).total_seconds()))
                    held = self.holding()
                    if held:  # held mail: look again when the hold ends
                        timeout = max(timeout, min(held, self.idle_poll))
                await _wait_any(stopping, self.wakeup, timeout=timeout)
                if self.coalesce and not stopping.is_set():
                    # mail comes in bursts (a backlog): gather a few before claiming
                    await _wait_any(
                        stopping, self.wakeup, timeout=self.coalesce, wake_on_event=False
                    )
        finally:
            await self._final_fold()
            await self.transport.close()
            if self.journal is not None:
                self.journal.close()


async def _wait_any(
    stopping: asyncio.Event, wakeup: asyncio.Event, timeout: float, wake_on_event: bool = True
) -> None:
    waiters = [asyncio.ensure_future(stopping.wait())]
    if wake_on_event:
        waiters.append(asyncio.ensure_future(wakeup.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        wakeup.clear()
