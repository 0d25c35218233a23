"""Periodic jobs (SLA escalation, missing backup reports, auto-close...) in one task.

A job does what is due at `rt.clock.now()` and says when it next has work; the scheduler
wakes at the earliest such moment, and at least every minute. Jobs keep their own state in
the database, so a restart neither skips nor repeats their work.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from maild.log import get_logger

if TYPE_CHECKING:
    from maild.ingest import Runtime

log = get_logger("maild.scheduler")
MAX_SLEEP = timedelta(minutes=1)


class PeriodicJob(Protocol):
    name: str

    def run_due(self, rt: Runtime) -> datetime | None:
        """Do what is due now; return when there is next something to do (None: unknown)."""
        ...


def default_jobs(rt: Runtime) -> list[PeriodicJob]:
    """The jobs the daemon runs, given the configuration."""
    jobs: list[PeriodicJob] = []
    from maild.sla.escalation import sla_jobs

    jobs.extend(sla_jobs(rt.cfg))  # SLA escalation levels, daily digest of overdue tickets
    from maild.operators.lifecycle import AutoCloseJob

    jobs.append(AutoCloseJob())  # resolved tickets close after the warranty
    from maild.backup.monitor import periodic_jobs as backup_jobs

    jobs.extend(backup_jobs(rt))  # missing backup reports, morning summary
    return jobs


class Scheduler:
    def __init__(self, rt: Runtime, jobs: list[PeriodicJob]) -> None:
        self.rt = rt
        self.jobs = jobs
        self.next_at: dict[str, datetime] = {}
        self.wakeup = asyncio.Event()

    def run_once(self) -> datetime:
        """Run every job that is due; return the earliest next moment."""
        now = self.rt.clock.now()
        horizon = now + MAX_SLEEP
        for job in self.jobs:
            if self.next_at.get(job.name, now) > now:
                continue
            try:
                nxt = job.run_due(self.rt)
            except Exception:
                log.exception("periodic_job_failed", job=job.name)
                nxt = None
            self.next_at[job.name] = min(nxt or horizon, horizon)
        return min(self.next_at.values(), default=horizon)

    async def run(self, stopping: asyncio.Event) -> None:
        if not self.jobs:
            await stopping.wait()
            return
        while not stopping.is_set():
            nxt = await asyncio.to_thread(self.run_once)
            delay = max(0.0, (nxt - self.rt.clock.now()).total_seconds())
            waits = [
                asyncio.ensure_future(stopping.wait()),
                asyncio.ensure_future(self.wakeup.wait()),
            ]
            await asyncio.wait(waits, timeout=min(delay, 60.0), return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            self.wakeup.clear()
