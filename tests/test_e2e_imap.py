"""End to end: the daemon against a real Dovecot (IMAP, IDLE) and aiosmtpd (SMTP)."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

from sqlalchemy import select

from maild.daemon import Daemon
from maild.models import OutboxMessage, Ticket

from .conftest import make_config
from .mails import make_mail


@asynccontextmanager
async def running(cfg):
    daemon = Daemon(cfg)
    task = asyncio.create_task(daemon.serve())
    await asyncio.wait_for(daemon.ready.wait(), 10)
    try:
        yield daemon
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 15)


async def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def outbox_statuses(db) -> set[str]:
    with db.session() as s:
        return set(s.scalars(select(OutboxMessage.status)).all())


async def test_mail_becomes_ticket_acknowledged_and_moved(imap, smtp, state_dir):
    sink, port = smtp
    imap.append(make_mail(message_id="<e2e-1@comune.example>"))
    cfg = make_config(state_dir, imap=imap, smtp_port=port)
    async with running(cfg) as daemon:
        mails = await asyncio.to_thread(sink.wait_for, 2)
        acks = sink.to("m.rossi@comune.vaiano-cremasco.cr.it")
        copies = sink.to("operatori@consorzio.example")
        assert len(acks) == 1 and len(copies) == 1
        assert acks[0]["Subject"].startswith("[Ticket#")
        assert acks[0]["In-Reply-To"] == "<e2e-1@comune.example>"
        await wait_until(lambda: imap.count("maild/processed") == 1)
        assert imap.count("INBOX") == 0
        with daemon.runtime.db.session() as s:
            [t] = s.scalars(select(Ticket)).all()
            assert t.origin_message_id == "<e2e-1@comune.example>"

        await wait_until(lambda: outbox_statuses(daemon.runtime.db) == {"sent"})
        assert len(mails) == 2


async def test_idle_acknowledges_new_mail_within_seconds(imap, smtp, state_dir):
    sink, port = smtp
    cfg = make_config(state_dir, imap=imap, smtp_port=port, mailbox=[])
    cfg = make_config(
        state_dir,
        imap=imap,
        smtp_port=port,
    )
    # polling would take 60 s: only IDLE can make this fast
    mb = cfg.mailbox[0].model_copy(update={"poll_interval": 60})
    cfg = cfg.model_copy(update={"mailbox": [mb]})
    async with running(cfg) as daemon:
        await asyncio.wait_for(daemon.sources[0].connected.wait(), 10)
        await asyncio.sleep(0.3)  # let the first (empty) drain finish and IDLE start
        started = time.monotonic()
        imap.append(make_mail(sender="a.verdi@comune.bagnolo-cremasco.cr.it"))
        await asyncio.to_thread(sink.wait_for, 2, 10)
        latency = time.monotonic() - started
        assert latency < 5, latency
        assert len(sink.to("a.verdi@comune.bagnolo-cremasco.cr.it")) == 1


async def test_smtp_outage_delays_but_never_loses(imap, smtp, state_dir):
    sink, port = smtp
    sink.refuse = 451  # temporary failure
    imap.append(make_mail())
    cfg = make_config(state_dir, imap=imap, smtp_port=port)
    async with running(cfg) as daemon:
        db = daemon.runtime.db

        def failed_attempts() -> int:
            with db.session() as s:
                return sum(s.scalars(select(OutboxMessage.attempts)).all())

        await wait_until(lambda: failed_attempts() >= 2)
        assert sink.messages == []
        sink.refuse = None
        await asyncio.to_thread(sink.wait_for, 2, 15)
        await wait_until(lambda: outbox_statuses(db) == {"sent"})
        assert len(sink.messages) == 2


async def test_imap_outage_reconnects(imap, smtp, state_dir):
    """A wrong port first (nothing listens): the source retries, then works after reload."""
    sink, port = smtp
    cfg = make_config(state_dir, imap=imap, smtp_port=port)
    async with running(cfg) as daemon:
        await asyncio.wait_for(daemon.sources[0].connected.wait(), 10)
        # drop the connection under the daemon's feet
        await daemon.sources[0].close()
        imap.append(make_mail(subject="dopo la riconnessione"))
        await asyncio.to_thread(sink.wait_for, 2, 15)
        await wait_until(lambda: imap.count("maild/processed") == 1)


async def test_bad_message_goes_to_quarantine_and_does_not_block(imap, smtp, state_dir):
    sink, port = smtp
    imap.append(b"\x00\x01\x02 not an e-mail \xff\r\n" * 20)
    imap.append(make_mail(subject="dopo il messaggio rotto"))
    cfg = make_config(state_dir, imap=imap, smtp_port=port)
    async with running(cfg):
        await asyncio.to_thread(sink.wait_for, 3, 15)
        await wait_until(lambda: imap.count("maild/quarantine") == 1)
        await wait_until(lambda: imap.count("maild/processed") == 1)
        assert imap.count("INBOX") == 0
        to_ops = sink.to("operatori@consorzio.example")
        [alert] = [m for m in to_ops if m["X-Maild-Kind"] == "alert"]
        assert "quarantena" in alert["Subject"]
        assert len(sink.to("m.rossi@comune.vaiano-cremasco.cr.it")) == 1


async def test_large_backlog_is_read_in_batches(imap, smtp, state_dir):
    """More messages than one UID FETCH batch: all processed, none twice."""
    sink, port = smtp
    conn = imap.connect()
    for i in range(30):
        conn.append(
            "INBOX",
            None,
            None,
            make_mail(sender=f"u{i}@comune.crema.example", subject=f"backlog {i}"),
        )
    conn.logout()
    cfg = make_config(state_dir, imap=imap, smtp_port=port)
    mb = cfg.mailbox[0].model_copy(update={"fetch_batch": 7})
    cfg = cfg.model_copy(update={"mailbox": [mb]})
    async with running(cfg) as daemon:
        await asyncio.to_thread(sink.wait_for, 60, 30)
        await wait_until(lambda: imap.count("maild/processed") == 30)
        with daemon.runtime.db.session() as s:
            assert len(s.scalars(select(Ticket)).all()) == 30


async def test_stop_finishes_the_message_in_hand_and_leaves_the_rest(imap, smtp, state_dir):
    """Stopping in the middle of a fetched batch: what was committed is moved, the rest
    stays in the inbox for the next run, nothing is lost."""
    sink, port = smtp
    conn = imap.connect()
    for i in range(40):
        conn.append(
            "INBOX", None, None, make_mail(sender=f"s{i}@comune.crema.example", subject=f"stop {i}")
        )
    conn.logout()
    cfg = make_config(state_dir, imap=imap, smtp_port=port)
    daemon = Daemon(cfg)
    task = asyncio.create_task(daemon.serve())
    await asyncio.wait_for(daemon.ready.wait(), 10)

    def recorded() -> int:
        with daemon.runtime.db.session() as s:
            return len(s.scalars(select(Ticket.id)).all())

    await wait_until(lambda: recorded() >= 3)
    daemon.stop()
    await asyncio.wait_for(task, 10)
    done = imap.count("maild/processed")
    assert done == recorded() and imap.count("INBOX") == 40 - done
    assert done < 40  # it did stop half-way
    async with running(cfg):  # the next run takes the rest
        await wait_until(lambda: imap.count("maild/processed") == 40, 30)


async def test_daemon_on_each_database(imap, smtp, state_dir, db_url):
    """The production set-up (PostgreSQL) and the default (SQLite): a new request and the
    requester's follow-up, end to end."""
    sink, port = smtp
    imap.append(make_mail(message_id="<db-1@comune.example>"))
    imap.append(
        make_mail(
            subject="R: Stampante non stampa",
            message_id="<db-2@comune.example>",
            in_reply_to="<db-1@comune.example>",
            body="Aggiungo: anche la seconda stampante.\n",
        )
    )
    cfg = make_config(state_dir, db_url=db_url, imap=imap, smtp_port=port)
    async with running(cfg) as daemon:
        await asyncio.to_thread(sink.wait_for, 3, 15)  # ack, operators' copy, follow-up copy
        await wait_until(lambda: imap.count("maild/processed") == 2)
        await wait_until(lambda: outbox_statuses(daemon.runtime.db) == {"sent"})
        with daemon.runtime.db.session() as s:
            [t] = s.scalars(select(Ticket)).all()
            assert t.number.endswith("-000001")
        assert len(sink.to("m.rossi@comune.vaiano-cremasco.cr.it")) == 1
