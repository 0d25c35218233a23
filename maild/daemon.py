"""The daemon: one task per mailbox, one outbox sender, signals and systemd.

SIGTERM/SIGINT: stop taking messages, let the one in hand finish, exit within 10 s.
SIGHUP: re-read the configuration; if it is valid, restart the tasks with it, else keep
running on the old one and log why.
SIGUSR1: log what every task is waiting for (a daemon that seems stuck says where).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

from maild import systemd
from maild.clock import Clock, SystemClock
from maild.config import Config, ConfigError, load_config
from maild.db import Database
from maild.inbound import dedupe_key
from maild.ingest import InboundItem, Ingestor, IngestResult, Runtime
from maild.log import get_logger
from maild.outbox import OutboxSender, lease_owner, make_transport, release_leases
from maild.parse_process import ParseProcess, ParseTimeout
from maild.prepare import FAILED, Prepared
from maild.scheduler import Scheduler, default_jobs
from maild.sender_process import SenderProcess
from maild.sources.imap import ImapSource
from maild.sources.maildir import MaildirSource

log = get_logger("maild.daemon")
STOP_GRACE = 9.0  # seconds: systemd's default TimeoutStopSec is 90, the contract says 10


def prepare_database(cfg: Config) -> Database:
    db = Database(cfg.database_url)
    db.upgrade()  # no-op when at head; creates the schema of an empty database
    return db


async def parse_stage(
    parser: ParseProcess,
    items: list[InboundItem],
    here: Callable[[list[InboundItem]], list[Prepared]],
) -> list[Prepared] | None:
    """The run parsed in the parse process, or None to parse it `here` (in the daemon).
    When the process hangs on a run, its messages go through it again one by one: the one
    that hangs it alone is failed (quarantined with an alert), not parsed in the daemon,
    where it would hang ingestion itself."""
    try:
        return await parser.prepare(items)
    except ParseTimeout:
        if len(items) == 1:
            return [_hung(items[0])]
    out: list[Prepared] = []
    for pos, item in enumerate(items):
        try:
            await asyncio.wait_for(parser.ready.wait(), 60)  # restarted after the kill
            one = await parser.prepare([item])
        except ParseTimeout:
            log.error("message_hangs_the_parser", mailbox=item.mailbox, uid=item.uid)
            one = [_hung(item)]
        except TimeoutError:  # no parse process came back: the rest is parsed here
            return out + await asyncio.to_thread(here, items[pos:])
        if one is None:  # the process is gone again: this message is parsed here
            one = await asyncio.to_thread(here, [item])
        out += one
    return out


def _hung(item: InboundItem) -> Prepared:
    return Prepared(dedupe_key(item.raw), special=FAILED, error="parsing did not finish in time")


def log_tasks() -> None:
    """One log line per asyncio task: its name and the frames it is suspended in."""
    for task in asyncio.all_tasks():
        frames, awaited = [], task.get_coro()
        while awaited is not None:  # down the chain of awaits, outermost first
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is None:
                frames.append(repr(awaited)[:120])  # a future, a lock's waiter...
                break
            code = frame.f_code
            frames.append(f"{code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno} {code.co_name}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        log.info("task_waiting", task=task.get_name(), frames=frames)


class Daemon:
    def __init__(
        self,
        cfg: Config,
        *,
        clock: Clock | None = None,
        config_path: Path | None = None,
        loader: Callable[[Path | None], Config] = load_config,
    ) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        # the parse stage and the outbox sender in processes of their own (as configured),
        # except where a test drives time by hand: other processes cannot read that clock
        self.processes = clock is None
        self.config_path = config_path or cfg.source
        self.loader = loader
        self.stopping = asyncio.Event()
        self.reload = asyncio.Event()
        self.ready = asyncio.Event()
        self.sources: list[ImapSource | MaildirSource] = []
        self.sender: OutboxSender | SenderProcess | None = None
        self.parser: ParseProcess | None = None
        self.helpers: list[ParseProcess | SenderProcess] = []
        self.runtime: Runtime | None = None

    def build(self, cfg: Config) -> list[Callable[[asyncio.Event], object]]:
        db = (
            self.runtime.db
            if self.runtime and self.runtime.cfg.database_url == cfg.database_url
            else None
        )
        if db is None:
            db = prepare_database(cfg)
        rt = Runtime.create(cfg, db=db, clock=self.clock)
        self.runtime = rt
        # our previous run's leases are void: all of them on SQLite (a single instance),
        # those naming us on PostgreSQL (other instances may share the outbox)
        owner = lease_owner(cfg)
        release_leases(rt.db, self.clock, None if rt.db.sqlite_path is not None else owner)
        if self.processes and cfg.service.sender_process:
            sender: OutboxSender | SenderProcess = SenderProcess(cfg)
            wake = sender.wake
        else:
            sender = OutboxSender(
                rt.db, make_transport(cfg.smtp), self.clock, cfg.smtp, rt.notifier, owner=owner
            )
            wake = sender.wakeup.set
        self.sender = sender
        self.parser = ParseProcess(cfg) if self.processes and cfg.service.parse_process else None
        parser = self.parser
        ingestor = Ingestor(rt)
        # runs go to the database one at a time, in the order they came: each waits for
        # the one before it, whatever became of that one's parse
        last: list[asyncio.Future | None] = [None]

        async def ingest(
            items: list[InboundItem], stop: Callable[[], bool] | None
        ) -> list[IngestResult]:
            before, mine = last[0], asyncio.get_running_loop().create_future()
            last[0] = mine
            try:
                prepared = None
                if parser is not None:
                    prepared = await parse_stage(parser, items, ingestor.prepare)
                if before is not None:
                    await asyncio.shield(before)
                if stop is not None and stop():
                    # stopping, or a run before this one failed or stopped short: its
                    # messages wait in the inbox, so this run must not overtake them
                    return []
                if prepared is None:  # parsed here
                    results = await asyncio.to_thread(ingestor.ingest_batch, items, stop)
                else:
                    results = await asyncio.to_thread(
                        ingestor.ingest_prepared, items, prepared, stop
                    )
            finally:  # the next run's turn, once the one before this has had its own
                if before is None or before.done():
                    mine.set_result(None)
                else:
                    before.add_done_callback(lambda _: mine.set_result(None))
            wake()
            return results

        # with a parse process, the next run is parsed there while this one is committed
        ingest.parallel = 2 if parser is not None else 1  # type: ignore[attr-defined]

        self.sources = [
            ImapSource(m, ingest) if m.type == "imap" else MaildirSource(m, ingest)
            for m in cfg.mailbox
        ]
        self.scheduler = Scheduler(rt, default_jobs(rt))
        # the daemon's own processes start first: mail is read once they are ready
        self.helpers = [p for p in (parser, sender) if isinstance(p, ParseProcess | SenderProcess)]
        in_process = [] if isinstance(sender, SenderProcess) else [sender.run]
        return [s.run for s in self.sources] + in_process + [self.scheduler.run]

    async def _generation(self, cfg: Config) -> None:
        runners = self.build(cfg)
        stop_gen = asyncio.Event()
        tasks = [asyncio.create_task(h.run(stop_gen)) for h in self.helpers]
        if tasks:  # a helper that does not start in time is not waited for: mail goes on
            ready = asyncio.gather(*(h.ready.wait() for h in self.helpers))
            await asyncio.wait([ready, *tasks], timeout=30, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
        tasks += [asyncio.create_task(r(stop_gen)) for r in runners]
        self.ready.set()
        systemd.notify(f"READY=1\nSTATUS=watching {len(self.sources)} mailbox(es)")
        waits = [
            asyncio.ensure_future(self.stopping.wait()),
            asyncio.ensure_future(self.reload.wait()),
        ]
        await asyncio.wait([*waits, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        stop_gen.set()
        done, pending = await asyncio.wait(tasks, timeout=STOP_GRACE)
        for t in pending:
            t.cancel()
        crashed = False
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                log.error("task_failed", error=repr(t.exception()))
                crashed = True
        if crashed and not self.stopping.is_set() and not self.reload.is_set():
            # a task died: restart everything, but not in a tight loop
            try:
                await asyncio.wait_for(self.stopping.wait(), 5)
            except TimeoutError:
                pass

    async def _watchdog(self) -> None:
        interval = systemd.watchdog_interval()
        if interval is None:
            return
        while not self.stopping.is_set():
            systemd.notify("WATCHDOG=1")
            try:
                await asyncio.wait_for(self.stopping.wait(), interval)
            except TimeoutError:
                pass

    def _on_reload(self) -> None:
        try:
            new = self.loader(self.config_path)
        except ConfigError as e:
            log.error("reload_rejected", error=str(e))
            # visible in `systemctl status maild`
            systemd.notify(f"STATUS=configuration rejected, still running on the old one: {e}")
            return
        log.info("reloading_configuration", path=str(self.config_path))
        self.cfg = new
        self.reload.set()

    async def run(self) -> None:
        """The daemon under systemd or a terminal: signals drive stop and reload."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload)
        loop.add_signal_handler(signal.SIGUSR1, log_tasks)
        try:
            await self.serve()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
                loop.remove_signal_handler(sig)

    async def serve(self) -> None:
        """Run until stop() is called (tests call this directly)."""
        watchdog = asyncio.create_task(self._watchdog())
        log.info("maild_starting", mailboxes=[m.name for m in self.cfg.mailbox])
        try:
            while not self.stopping.is_set():
                self.reload.clear()
                if self.ready.is_set():
                    systemd.notify("RELOADING=1")
                await self._generation(self.cfg)
        finally:
            systemd.notify("STOPPING=1")
            watchdog.cancel()
            if self.runtime is not None:
                self.runtime.db.dispose()
            log.info("maild_stopped")

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("maild_stopping")
            systemd.notify("STOPPING=1")
        self.stopping.set()
