"""The parse stage in a process of its own: same answers as in the daemon's process, and a
process that dies or hangs costs a re-parse, never a lost or blocked run."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from maild.blobs import BlobStore
from maild.inbound import InboundItem
from maild.parse_process import ParseProcess, ParseTimeout
from maild.prepare import NOT_A_MESSAGE, prepare

from .conftest import make_config, sample
from .mails import make_mail
from .test_e2e_imap import running, wait_until


def _items() -> list[InboundItem]:
    raws = [
        make_mail(subject="Protocollo non parte", message_id="<pp-1@comune.example>"),
        make_mail(
            subject="Scanner",
            attachments=[("application/pdf", "scansione.pdf", b"%PDF-1.4 scansione")],
        ),
        sample("samples/italian-mail/a02-outlook2016-reply-toppost-full-history.eml"),
        b"not a message at all",
    ]
    return [InboundItem(raw, "supporto", 7, uid) for uid, raw in enumerate(raws, 1)]


async def _started(parser: ParseProcess, stopping: asyncio.Event) -> asyncio.Task:
    task = asyncio.create_task(parser.run(stopping))
    await asyncio.wait_for(parser.ready.wait(), 30)
    return task


async def _stop(task: asyncio.Task, stopping: asyncio.Event) -> None:
    stopping.set()
    await asyncio.wait_for(task, 15)


async def test_parse_process_answers_as_the_daemon_would(state_dir):
    cfg = make_config(state_dir)
    items = _items()
    here = [prepare(i, cfg, BlobStore(state_dir / "blobs")) for i in items]
    parser, stopping = ParseProcess(cfg), asyncio.Event()
    task = await _started(parser, stopping)
    try:
        there = await parser.prepare(items)
    finally:
        await _stop(task, stopping)
    assert there is not None and len(there) == len(items)
    for a, b in zip(here, there, strict=True):
        assert (a.key, a.raw_sha256, a.special) == (b.key, b.raw_sha256, b.special)
        if a.msg is not None:
            assert (a.msg.subject, a.msg.text, a.msg.memo) == (
                b.msg.subject,
                b.msg.text,
                b.msg.memo,
            )
            assert [x.sha256 for x in a.msg.attachments] == [x.sha256 for x in b.msg.attachments]
            assert b.msg.email is None  # lightened: what crosses the pipe is small
    assert there[-1].special == NOT_A_MESSAGE
    assert there[1].msg.attachments[0].sha256 is not None
    assert parser.proc.returncode is not None  # stopped with the daemon


async def test_killed_parse_process_is_replaced_and_the_run_parsed_here(state_dir):
    parser, stopping = ParseProcess(make_config(state_dir)), asyncio.Event()
    task = await _started(parser, stopping)
    try:
        first = parser.proc.pid
        os.kill(first, signal.SIGKILL)
        assert await parser.prepare(_items()) is None  # the caller parses them itself
        await asyncio.wait_for(parser.ready.wait(), 30)  # a new one, after a backoff
        assert parser.proc.pid != first
        assert await parser.prepare(_items()) is not None
    finally:
        await _stop(task, stopping)


async def test_hung_parse_process_is_given_up_not_waited_for(state_dir):
    parser = ParseProcess(make_config(state_dir), timeout=lambda items: 0.5)
    stopping = asyncio.Event()
    task = await _started(parser, stopping)
    try:
        hung = parser.proc.pid
        os.kill(hung, signal.SIGSTOP)
        t0 = time.monotonic()
        with pytest.raises(ParseTimeout):
            await parser.prepare(_items())
        assert time.monotonic() - t0 < 5
        await asyncio.wait_for(parser.ready.wait(), 30)
        assert parser.proc.pid != hung
    finally:
        await _stop(task, stopping)


async def test_daemon_ingests_everything_when_its_parse_process_dies(imap, smtp, state_dir):
    sink, port = smtp
    n = 40
    for i in range(n):
        imap.append(  # one sender each: the acknowledgement rate limit is per sender
            make_mail(
                sender=f"utente{i}@comune.vaiano-cremasco.cr.it",
                subject=f"Richiesta {i}",
                message_id=f"<pp-kill-{i}@comune.example>",
            )
        )
    cfg = make_config(state_dir, imap=imap, smtp_port=port)
    async with running(cfg) as daemon:
        # mail is read once the daemon's processes are up and warm
        assert daemon.parser.ready.is_set() and daemon.sender.ready.is_set()
        os.kill(daemon.parser.proc.pid, signal.SIGKILL)
        await wait_until(lambda: imap.count("maild/processed") == n, timeout=30)
        acks = await asyncio.to_thread(sink.wait_for, 2 * n, 30)
    from sqlalchemy import func, select

    from maild.models import Ticket

    with daemon.runtime.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == n
    replied = [m["In-Reply-To"] for m in acks if m["To"].endswith("vaiano-cremasco.cr.it")]
    assert sorted(replied) == sorted(f"<pp-kill-{i}@comune.example>" for i in range(n))


async def test_a_message_that_hangs_the_parser_is_failed_alone(state_dir, monkeypatch):
    """The run is tried again message by message; the one that hangs the parse process is
    failed (the daemon quarantines it), the others are parsed, none in the daemon."""
    from maild import daemon

    items = _items()
    hang = items[1].raw
    parser = ParseProcess(make_config(state_dir), timeout=lambda run: 1.0)
    stopping = asyncio.Event()
    task = await _started(parser, stopping)
    real_exchange = parser._exchange

    async def exchange(proc, run):  # the process "hangs" on one message: it is stopped
        if any(i.raw == hang for i in run):
            os.kill(proc.pid, signal.SIGSTOP)
        return await real_exchange(proc, run)

    monkeypatch.setattr(parser, "_exchange", exchange)

    def here(run):  # never parsed in the daemon
        raise AssertionError(f"parsed in the daemon: {run}")

    try:
        prepared = await daemon.parse_stage(parser, items, here)
    finally:
        await _stop(task, stopping)
    assert [p.special for p in prepared] == [None, "failed", None, "not_a_message"]
    assert "did not finish" in prepared[1].error
    assert prepared[0].msg.subject == "Protocollo non parte"


async def test_a_run_behind_a_failed_one_does_not_overtake_it():
    """feed(): when a run fails, the run in flight behind it must not commit (its
    messages would be committed before the failed run's, a reply before its original)."""
    from maild.sources.runs import Ramp, feed

    committed: list[int] = []
    turn, behind = asyncio.Lock(), asyncio.Event()

    async def ingest(items, stop):  # as the daemon's: the database stage under a FIFO lock
        if items[0].uid != 1:
            behind.set()
        async with turn:
            if items[0].uid == 1:
                await behind.wait()  # the next run waits for its turn meanwhile
                raise RuntimeError("database unavailable")
            if stop is not None and stop():
                return []
            committed.extend(i.uid for i in items)
            return [None] * len(items)

    ingest.parallel = 2
    settled: list[int] = []

    async def settle(done, results):
        settled.extend(done)

    entries = [1, 2, 3]
    make = lambda part: (list(part), [InboundItem(b"x", "supporto", 1, u) for u in part])  # noqa: E731
    with pytest.raises(RuntimeError):
        await feed(ingest, entries, make, settle, Ramp(limit=2), None)
    assert committed == [] and settled == []
