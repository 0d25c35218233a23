"""The daemon's child processes (the outbox sender, the parse stage): how they start,
get their configuration, and die with the daemon.

A child is `python -m <module> <daemon pid> ...`, its configuration pickled on stdin (so
secrets never show in a process list), systemd's notification socket taken away (only
the daemon speaks to systemd). It asks the kernel to kill it when the daemon dies
(PR_SET_PDEATHSIG): a killed daemon never leaves a child behind to race the next one's.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import pickle
import signal
import struct
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

PR_SET_PDEATHSIG = 1
FRAME = struct.Struct("!Q")  # length prefix of a pickled message on a pipe


async def spawn(
    module: str,
    cfg: Any,
    *args: str,
    pass_fds: tuple[int, ...] = (),
    pipe_stdout: bool = False,
) -> asyncio.subprocess.Process:
    root = str(Path(__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        str(os.getpid()),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE if pipe_stdout else None,
        pass_fds=pass_fds,
        env=env,
    )
    assert proc.stdin is not None
    proc.stdin.write(frame(cfg))
    await proc.stdin.drain()
    return proc


class Restarts:
    """The pause before a child that exited is started again: doubling from 1 s to 60 s,
    back to 1 s once a child has lived a minute."""

    def __init__(self) -> None:
        self.backoff = 1.0
        self._started = 0.0

    def started(self) -> None:
        self._started = time.monotonic()

    async def pause(
        self, stopping: asyncio.Event, log: Any, event: str, proc: asyncio.subprocess.Process
    ) -> None:
        """Log that the child exited, wait before the next start (returns early when
        stopping)."""
        if time.monotonic() - self._started > 60:
            self.backoff = 1.0
        pause = self.backoff
        log.error(event, pid=proc.pid, code=proc.returncode, retry_in=pause)
        try:
            await asyncio.wait_for(stopping.wait(), pause)
        except TimeoutError:
            pass
        self.backoff = min(self.backoff * 2, 60.0)


async def said_ready(proc: asyncio.subprocess.Process, timeout: float = 60.0) -> bool:
    """Whether the child wrote its "ready" frame on stdout within `timeout`."""
    assert proc.stdout is not None
    try:
        await asyncio.wait_for(read_frame_async(proc.stdout), timeout)
    except (TimeoutError, EOFError, asyncio.IncompleteReadError):
        return False
    return True


async def exit_or_stop(proc: asyncio.subprocess.Process, stopping: asyncio.Event) -> asyncio.Future:
    """Wait until the child exits or the daemon stops; returns the child's exit future."""
    exited = asyncio.ensure_future(proc.wait())
    stop = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    return exited


async def terminate(proc: asyncio.subprocess.Process, exited: asyncio.Future, grace: float) -> bool:
    """SIGTERM (the child finishes what it has in hand), SIGKILL after `grace` seconds.
    Returns whether it had to be killed."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(exited), grace)
    except TimeoutError:
        proc.kill()
        await exited
        return True
    return False


def frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME.pack(len(data)) + data


def read_frame(stream: BinaryIO) -> Any:
    """The next pickled message on `stream` (blocking); EOFError when the other side
    has gone."""
    head = stream.read(FRAME.size)
    if len(head) < FRAME.size:
        raise EOFError
    (size,) = FRAME.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


async def read_frame_async(stream: asyncio.StreamReader) -> Any:
    (size,) = FRAME.unpack(await stream.readexactly(FRAME.size))
    return pickle.loads(await stream.readexactly(size))


def die_with(parent: int) -> None:
    """This process is killed when `parent` dies (Linux), or exits now if it has."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the child notices its pipes' end-of-file instead
    if os.getppid() != parent:  # the daemon died before we could ask
        os._exit(1)


def child_start(argv: list[str]) -> Any:
    """In the child: die with the daemon, read the configuration, set up logging."""
    die_with(int(argv[0]))
    cfg = read_frame(sys.stdin.buffer)
    from maild.log import configure_logging

    configure_logging(cfg.logging.level, cfg.logging.format)
    return cfg
