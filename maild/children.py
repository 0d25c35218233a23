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
