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
import time

from maild.children import child_start, frame, read_frame, read_frame_async, spawn
from maild.config import Config
from maild.inbound import InboundItem, TemporaryFailure
from maild.log import get_logger
from maild.prepare import Prepared

log = get_logger("maild.parse")
STOP_WAIT = 5.0


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
            try:
                answer = await asyncio.wait_for(self._exchange(proc, items), self.timeout(items))
            except (OSError, EOFError, asyncio.IncompleteReadError, TimeoutError) as e:
                # parsed again here; the run loop starts a new process
                error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                log.error("parse_process_lost", pid=proc.pid, error=error)
                self.ready.clear()
                if proc.returncode is None:
                    proc.kill()
                return None
        if isinstance(answer, TemporaryFailure):
            raise answer
        if not isinstance(answer, list) or len(answer) != len(items):  # never: but say so
            log.error("parse_process_wrong_answer", pid=proc.pid, got=type(answer).__name__)
            return None
        return answer

    @staticmethod
    async def _exchange(proc: asyncio.subprocess.Process, items: list[InboundItem]) -> object:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(frame(items))
        await proc.stdin.drain()
        return await read_frame_async(proc.stdout)

    async def run(self, stopping: asyncio.Event) -> None:
        backoff = 1.0
        while not stopping.is_set():
            started = time.monotonic()
            self.proc = proc = await spawn("maild.parse_process", self.cfg, pipe_stdout=True)
            assert proc.stdout is not None
            try:
                await asyncio.wait_for(read_frame_async(proc.stdout), 60)  # "ready"
                self.ready.set()
                log.info("parse_process_started", pid=proc.pid)
            except (TimeoutError, EOFError, asyncio.IncompleteReadError):
                log.error("parse_process_did_not_start", pid=proc.pid)
            waiting = asyncio.ensure_future(proc.wait())
            stop = asyncio.ensure_future(stopping.wait())
            await asyncio.wait({waiting, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            self.ready.clear()
            if not waiting.done():  # stopping: it finishes the run in hand
                async with self._turn:
                    if proc.returncode is None:
                        proc.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.wait_for(asyncio.shield(waiting), STOP_WAIT)
                    except TimeoutError:
                        proc.kill()
                        await waiting
            if stopping.is_set():
                return
            if time.monotonic() - started > 60:
                backoff = 1.0
            log.error("parse_process_exited", pid=proc.pid, code=proc.returncode, retry_in=backoff)
            try:
                await asyncio.wait_for(stopping.wait(), backoff)
            except TimeoutError:
                pass
            backoff = min(backoff * 2, 60.0)


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
