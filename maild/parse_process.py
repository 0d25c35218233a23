"""The parse stage (maild.prepare) in a process of its own.

During a backlog the daemon's process is busy with the database half of ingestion; the
parse stage needs none of it, so it runs here, on the other core, one run ahead: while
the daemon commits run k, this process parses run k+1. Runs are parsed and then go to the
database strictly in the order they came.

If this process fails the daemon parses in its own process until it is back: the parse
stage is the same function either way, and a run that was half parsed here is parsed
again (writing a blob twice changes nothing).
"""

from __future__ import annotations

import asyncio
import signal
import sys

from maild.children import (
    Restarts,
    child_start,
    exit_or_stop,
    frame,
    read_frame,
    read_frame_async,
    said_ready,
    spawn,
    terminate,
)
from maild.config import Config
from maild.inbound import InboundItem, TemporaryFailure
from maild.log import get_logger
from maild.prepare import Prepared

log = get_logger("maild.parse")
STOP_WAIT = 5.0


class ParseTimeout(Exception):
    """The parse process did not answer in time (it has been killed): some message of the
    run may hang the parser, so the run must not simply be parsed again in the daemon."""


def answer_timeout(items: list[InboundItem]) -> float:
    """How long a run may take in the parse process before it is deemed stuck: generous
    (a 25 MB message parses in a few seconds), so only a process that hangs trips it."""
    return 30.0 + 2.0 * sum(len(i.raw) for i in items) / 1e6


class ParseProcess:
    def __init__(self, cfg: Config, timeout=answer_timeout) -> None:
        self.cfg = cfg
        self.timeout = timeout
        self.proc: asyncio.subprocess.Process | None = None
        self.ready = asyncio.Event()  # the process runs and has answered it is ready
        self._turn = asyncio.Lock()  # one run at a time through the pipe, in order

    async def prepare(self, items: list[InboundItem]) -> list[Prepared] | None:
        """The parse stage of `items` here, or None when the process is not there (the
        caller then parses them itself)."""
        async with self._turn:
            proc = self.proc
            if proc is None or not self.ready.is_set():
                return None
            timeout = self.timeout(items)
            try:
                answer = await asyncio.wait_for(self._exchange(proc, items), timeout)
            except TimeoutError:
                log.error("parse_process_timeout", pid=proc.pid, messages=len(items), after=timeout)
                self._lose(proc)
                raise ParseTimeout(f"no answer in {timeout:.0f} s") from None
            except (OSError, EOFError, asyncio.IncompleteReadError) as e:
                # parsed again by the caller; the run loop starts a new process
                log.error("parse_process_lost", pid=proc.pid, error=f"{type(e).__name__}: {e}")
                self._lose(proc)
                return None
            except BaseException:  # cancelled mid-exchange: the pipe is out of step
                self._lose(proc)
                raise
            if not isinstance(answer, TemporaryFailure | list) or (
                isinstance(answer, list) and len(answer) != len(items)
            ):  # never: but the pipe cannot be trusted after it
                log.error("parse_process_wrong_answer", pid=proc.pid, got=type(answer).__name__)
                self._lose(proc)
                return None
        if isinstance(answer, TemporaryFailure):
            raise answer
        return answer

    def _lose(self, proc: asyncio.subprocess.Process) -> None:
        self.ready.clear()
        if proc.returncode is None:
            proc.kill()

    @staticmethod
    async def _exchange(proc: asyncio.subprocess.Process, items: list[InboundItem]) -> object:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(frame(items))
        await proc.stdin.drain()
        return await read_frame_async(proc.stdout)

    async def run(self, stopping: asyncio.Event) -> None:
        restarts = Restarts()
        while not stopping.is_set():
            restarts.started()
            self.proc = proc = await spawn("maild.parse_process", self.cfg, pipe_stdout=True)
            assert proc.stdout is not None
            if await said_ready(proc):
                self.ready.set()
                log.info("parse_process_started", pid=proc.pid)
            else:
                log.error("parse_process_did_not_start", pid=proc.pid)
            exited = await exit_or_stop(proc, stopping)
            self.ready.clear()
            if not exited.done():  # stopping: it finishes the run in hand
                async with self._turn:
                    await terminate(proc, exited, STOP_WAIT)
            if stopping.is_set():
                return
            await restarts.pause(stopping, log, "parse_process_exited", proc)


# -- the process itself ---------------------------------------------------------------------


def main(argv: list[str]) -> None:
    cfg: Config = child_start(argv)
    import structlog

    from maild.blobs import BlobStore
    from maild.prepare import prepare

    structlog.contextvars.bind_contextvars(runner="parse")
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but answers may go to the daemon
    blobs = BlobStore(cfg.service.state_dir / "blobs")
    state = {"busy": False, "stop": False}

    def on_term(_signo, _frame) -> None:
        if not state["busy"]:
            raise SystemExit(0)
        state["stop"] = True  # the run in hand is answered first

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the daemon restarts us on reload
    stdout.write(frame("ready"))
    stdout.flush()
    while not state["stop"]:
        try:
            items = read_frame(stdin)
        except EOFError:  # the daemon is gone
            break
        state["busy"] = True
        try:
            answer: object = [prepare(item, cfg, blobs) for item in items]
        except TemporaryFailure as e:
            answer = e
        stdout.write(frame(answer))
        stdout.flush()
        state["busy"] = False


if __name__ == "__main__":
    main(sys.argv[1:])
