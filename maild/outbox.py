"""The outbox sender: delivers queued mail, retrying with exponential backoff.

Rows are claimed with a lease (next_attempt_at pushed into the future, `FOR UPDATE SKIP
LOCKED` on PostgreSQL so several senders share the work), sent, then marked sent one by
one: a kill between the SMTP acceptance and the mark re-sends at most that one message.
An SMTP outage only delays mail: the rows wait in the table.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import aiosmtplib
from sqlalchemy import bindparam, select, update

from maild.clock import Clock
from maild.config import SmtpConfig
from maild.db import Database
from maild.log import get_logger
from maild.models import OutboxMessage

log = get_logger("maild.outbox")
SMTP_CONNECTIONS = 4  # parallel connections to the relay while a backlog is delivered


_OUTBOX = OutboxMessage.__table__
_MARK_SENT = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("row_id"))
    .values(status="sent", sent_at=bindparam("now"), last_error=None, claimed_at=None)
)


# kinds sent strictly one at a time (see send_due)
SERIAL_KINDS = frozenset({"ack"})


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


class OutboxSender:
    def __init__(
        self,
        db: Database,
        transport: Transport,
        clock: Clock,
        cfg: SmtpConfig,
        *,
        batch: int = 50,
        lease: timedelta = timedelta(minutes=2),
        idle_poll: float = 5.0,
        coalesce: float = 0.02,
    ) -> None:
        self.db = db
        self.transport = transport
        self.clock = clock
        self.cfg = cfg
        self.batch = batch
        self.lease = lease
        self.idle_poll = idle_poll
        self.coalesce = coalesce
        self.wakeup = asyncio.Event()
        self.sent = 0

    def backoff(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.cfg.retry_base * 2 ** (attempts - 1), self.cfg.retry_max))

    def release_leases(self) -> None:
        """At start of a single-instance daemon: our previous run's leases are void."""
        with self.db.transaction() as s:
            s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.status == "pending", OutboxMessage.claimed_at.is_not(None))
                .values(next_attempt_at=self.clock.now(), claimed_at=None)
            )

    def claim(self) -> list[OutboxMessage]:
        now = self.clock.now()
        with self.db.transaction() as s:
            rows = list(
                s.scalars(
                    select(OutboxMessage)
                    .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now)
                    .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                    .limit(self.batch)
                    .with_for_update(skip_locked=True)
                )
            )
            if rows:
                s.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_([r.id for r in rows]))
                    .values(next_attempt_at=now + self.lease, claimed_at=now)
                )
            for r in rows:
                s.expunge(r)
            return rows

    def _mark_sent(self, row_id: int, now: datetime) -> None:
        # Core on a bare connection: this runs once per mail, the ORM session costs more
        # than the UPDATE itself
        with self.db.engine.begin() as c:
            c.execute(
                _MARK_SENT,
                {"row_id": row_id, "now": now},
            )

    def _mark_failed(self, row: OutboxMessage, error: str, permanent: bool) -> None:
        attempts = row.attempts + 1
        dead = permanent or (self.cfg.max_attempts and attempts >= self.cfg.max_attempts)
        with self.db.transaction() as s:
            s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id)
                .values(
                    status="dead" if dead else "pending",
                    attempts=attempts,
                    last_error=error[:2000],
                    next_attempt_at=self.clock.now() + self.backoff(attempts),
                    claimed_at=None,
                )
            )

    async def _send_one(self, row: OutboxMessage) -> Exception | None:
        """Send one row and record the outcome; returns a temporary failure, if any."""
        try:
            await self.transport.send(row.envelope_from, row.recipients, row.data)
        except PermanentError as e:
            log.error("outbox_refused", outbox_id=row.id, message_id=row.message_id, error=str(e))
            await asyncio.to_thread(self._mark_failed, row, str(e), True)
            return None
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
            log.warning(
                "outbox_send_failed",
                outbox_id=row.id,
                message_id=row.message_id,
                error=error,
                attempts=row.attempts + 1,
            )
            await asyncio.to_thread(self._mark_failed, row, error, False)
            return e
        await asyncio.to_thread(self._mark_sent, row.id, self.clock.now())
        self.sent += 1
        log.info("outbox_sent", outbox_id=row.id, kind=row.kind, message_id=row.message_id)
        return None

    async def send_due(self) -> int:
        """Send what is due now; returns how many were sent.

        Up to `transport.parallel` mails are in flight at once; each is marked sent on
        its own as soon as the server accepted it, so a kill re-sends at most the mails
        in flight. After a temporary failure the unsent rest of the batch is released.
        """
        rows = await asyncio.to_thread(self.claim)
        if not rows:
            return 0
        queue = list(reversed(rows))
        failures: list[Exception] = []
        before = self.sent
        # acknowledgements go one at a time, sent and marked: a kill then repeats at most
        # one of them (the contract: at most one extra acknowledgement per crash)
        one_at_a_time = asyncio.Lock()

        async def worker() -> None:
            while queue and not failures:
                row = queue.pop()
                if row.kind in SERIAL_KINDS:
                    async with one_at_a_time:
                        failure = await self._send_one(row)
                else:
                    failure = await self._send_one(row)
                if failure is not None:  # the server is unhappy: stop taking new ones
                    failures.append(failure)

        width = max(1, min(getattr(self.transport, "parallel", 1), len(rows)))
        outcomes = await asyncio.gather(*(worker() for _ in range(width)), return_exceptions=True)
        crashed = next((o for o in outcomes if isinstance(o, BaseException)), None)
        if crashed is not None or failures:  # release the rest and retry later
            await asyncio.to_thread(self._release, [r.id for r in queue])
            raise crashed or failures[0]
        return self.sent - before

    def _release(self, ids: list[int]) -> None:
        if not ids:
            return
        with self.db.transaction() as s:
            s.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(ids))
                .values(next_attempt_at=self.clock.now(), claimed_at=None)
            )

    def next_due(self) -> datetime | None:
        with self.db.session() as s:
            return s.scalar(
                select(OutboxMessage.next_attempt_at)
                .where(OutboxMessage.status == "pending")
                .order_by(OutboxMessage.next_attempt_at)
                .limit(1)
            )

    async def run(self, stopping: asyncio.Event) -> None:
        failures = 0
        while not stopping.is_set():
            try:
                n = await self.send_due()
                failures = 0
                if n:
                    continue
            except Exception:
                failures += 1
                delay = min(self.cfg.retry_base * 2 ** (failures - 1), self.cfg.retry_max)
                await _wait_any(stopping, self.wakeup, timeout=delay, wake_on_event=False)
                continue
            due = await asyncio.to_thread(self.next_due)
            timeout = self.idle_poll
            if due is not None:
                timeout = max(0.0, min(timeout, (due - self.clock.now()).total_seconds()))
            await _wait_any(stopping, self.wakeup, timeout=timeout)
            if self.coalesce and not stopping.is_set():
                # mail comes in bursts (a backlog): gather a few before claiming
                await _wait_any(stopping, self.wakeup, timeout=self.coalesce, wake_on_event=False)
        await self.transport.close()


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
