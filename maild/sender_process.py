"""The outbox sender in a process of its own.

During a backlog ingestion (parsing, the database) and delivery (SMTP) each keep a core
busy; in one process they would take turns on one interpreter lock. Like Mailman's
runners, the sender is then a process with one job: the daemon starts it with its own
configuration, wakes it through a pipe after each commit, and stops it with SIGTERM (it
finishes the mail in hand). The database stays the only channel for the mail itself.

It dies with the daemon (maild.children, and end-of-file on the wake-up pipe). It says
it is ready (a frame on its stdout) once its imports are done and its templates compiled,
so the daemon starts reading mail only when the sender would not compete with it for
the CPU while starting.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from maild.children import (
    Restarts,
    child_start,
    exit_or_stop,
    frame,
    said_ready,
    spawn,
    terminate,
)
from maild.config import Config
from maild.log import get_logger

log = get_logger("maild.sender")
STOP_WAIT = 8.0  # seconds for the mail in hand before SIGKILL (the daemon's grace is 9)


class SenderProcess:
    """The daemon's handle on its sender process: start, wake, stop, restart."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._wake: int | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.ready = asyncio.Event()  # ... and has said it is ready to send

    def wake(self) -> None:
        """New mail is committed (called from any thread; never blocks)."""
        fd = self._wake
        if fd is None:
            return
        try:
            os.write(fd, b".")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups the sender has not read yet
        except OSError:
            pass  # the sender is gone: run() starts another

    async def _start(self) -> asyncio.subprocess.Process:
        read, write = os.pipe()
        os.set_blocking(write, False)
        try:
            proc = await spawn(
                "maild.sender_process", self.cfg, str(read), pass_fds=(read,), pipe_stdout=True
            )
        finally:
            os.close(read)
        assert proc.stdin is not None
        proc.stdin.close()
        self._wake = write
        return proc

    def _close_pipe(self) -> None:
        fd, self._wake = self._wake, None
        if fd is not None:
            os.close(fd)

    async def run(self, stopping: asyncio.Event) -> None:
        restarts = Restarts()
        while not stopping.is_set():
            restarts.started()
            self.proc = proc = await self._start()
            log.info("sender_process_started", pid=proc.pid)
            if await said_ready(proc):
                self.ready.set()
            else:
                log.error("sender_process_not_ready", pid=proc.pid)  # it may yet send
            exited = await exit_or_stop(proc, stopping)
            if not exited.done():  # we are stopping: the sender finishes the mail in hand
                if await terminate(proc, exited, STOP_WAIT):
                    log.warning("sender_process_killed", pid=proc.pid)
            self.ready.clear()
            self._close_pipe()
            if stopping.is_set():
                return
            await restarts.pause(stopping, log, "sender_process_exited", proc)


# -- the process itself ---------------------------------------------------------------------


async def _serve(cfg: Config, wake_fd: int, ready_out) -> None:
    from maild.clock import SystemClock
    from maild.db import Database
    from maild.notify import Notifier
    from maild.outbox import OutboxSender, lease_owner, make_transport

    db = Database(cfg.database_url)
    notifier = Notifier(cfg)
    notifier.warm()
    transport = make_transport(cfg.smtp)
    owner = lease_owner(cfg)
    sender = OutboxSender(db, transport, SystemClock(), cfg.smtp, notifier, owner=owner)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)  # the daemon restarts us on reload

    def readable() -> None:
        try:
            data = os.read(wake_fd, 4096)
        except BlockingIOError:
            return
        if data:
            sender.wakeup.set()
        else:  # the daemon is gone
            loop.remove_reader(wake_fd)
            stopping.set()

    os.set_blocking(wake_fd, False)
    loop.add_reader(wake_fd, readable)
    ready_out.write(frame("ready"))
    ready_out.flush()
    try:
        await sender.run(stopping)
    finally:
        db.dispose()


def main(argv: list[str]) -> None:
    cfg: Config = child_start(argv)
    import structlog

    structlog.contextvars.bind_contextvars(runner="outbox")
    ready_out = sys.stdout.buffer
    sys.stdout = sys.stderr  # stdout is the daemon's pipe
    asyncio.run(_serve(cfg, int(argv[1]), ready_out))


if __name__ == "__main__":
    main(sys.argv[1:])
