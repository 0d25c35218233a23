"""How a source hands its messages to ingestion: in runs, several in flight.

A lone new message is a run of its own, committed (and acknowledged) at once; a backlog is
taken in runs that double up to `Ramp.limit`, so a commit costs little per message while
the first tickets of a burst are committed within milliseconds, and a stop or a bad
message costs at most one run of work. Up to `ingest.parallel` runs are in flight at once
(with a parse process, the next run is parsed while one is committed); each is settled
(moved out of the inbox) as soon as it is committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from maild.ingest import InboundItem, IngestResult

T = TypeVar("T")
Stop = Callable[[], bool]


class IngestFn(Protocol):
    """A run of messages in, their results out: all of them, or those before `stop()`
    became true. `parallel`: how many runs may be in flight at once (default 1)."""

    def __call__(
        self, items: list[InboundItem], stop: Stop | None
    ) -> Awaitable[list[IngestResult]]: ...


class Ramp:
    def __init__(self, limit: int = 50) -> None:
        self.limit = limit
        self.size = 1

    def next(self) -> int:
        """The size of the next run (then the one after is twice as large)."""
        size = self.size
        self.size = min(self.size * 2, self.limit)
        return size

    def reset(self) -> None:
        """The source caught up: the next message starts a new ramp."""
        self.size = 1


async def feed(
    ingest: IngestFn,
    entries: Sequence[T],
    make_items: Callable[[Sequence[T]], tuple[list[T], list[InboundItem]]],
    settle: Callable[[list[T], list[IngestResult]], Awaitable[None]],
    ramp: Ramp,
    stop: Stop | None,
) -> int:
    """Ingest `entries` run by run; `settle(entries, results)` once each run committed.

    Returns how many were handled. Stops taking new runs when `stop()` becomes true or a
    run comes back short (stopped half-way); what is in flight is still settled. A run's
    failure is raised once the others in flight are settled."""
    parallel = max(1, getattr(ingest, "parallel", 1))
    handled = 0
    short = False
    failure: BaseException | None = None
    broken = False  # a run failed or stopped short: the runs after it must not commit

    def halted() -> bool:
        return broken or (stop is not None and stop())

    async def one(part: Sequence[T]) -> tuple[int, bool]:
        nonlocal broken
        taken, items = make_items(part)
        try:  # `broken` is set before the next run can take its turn at the database
            results = await ingest(items, halted) if items else []
        except BaseException:
            broken = True
            raise
        if len(results) < len(items):
            broken = True
        await settle(taken[: len(results)], results)
        return len(results), len(results) < len(items)

    def collect(done: set[asyncio.Task]) -> None:
        nonlocal handled, short, failure
        for task in done:
            if task.exception() is not None:
                failure = failure or task.exception()
                short = True
                continue
            n, stopped = task.result()
            handled += n
            short |= stopped

    pending: set[asyncio.Task] = set()
    pos = 0
    try:
        while pos < len(entries) and not short and not (stop is not None and stop()):
            if len(pending) >= parallel:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                collect(done)
                continue
            size = ramp.next()
            pending.add(asyncio.ensure_future(one(entries[pos : pos + size])))
            pos += size
    finally:
        if pending:
            done, _ = await asyncio.wait(pending)
            collect(done)
    if failure is not None:
        raise failure
    return handled
