"""Configured backup jobs: which job a report belongs to, when its reports are due, its state.

Deadlines are aware UTC datetimes: the local `expected_by` time (service time zone) of
each scheduled day, see `maild.backup.config` for what the schedules mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from maild.backup.config import BackupJobConfig, norm
from maild.backup.models import BackupJobState
from maild.backup.report import BackupReport

if TYPE_CHECKING:
    from maild.config import Config, EnteConfig

# a schedule that yields nothing for this long is treated as "never due"
_HORIZON = timedelta(days=400)


# -- matching ---------------------------------------------------------------------------


def match_job(cfg: Config, report: BackupReport, senders: Iterable[str]) -> BackupJobConfig | None:
    """The configured job a report belongs to: same product, same job name (any case),
    the configured sender if any, and the host when the product names no job (WSB)."""
    senders = {s.lower() for s in senders if s}
    product = report.product.lower()
    generic = report.variant in {r.name for r in cfg.backup_rule}
    candidates = []
    for job in cfg.backup_job:
        if job.product != product and not (generic and job.product == "generic"):
            continue
        if job.sender and job.sender not in senders:
            continue
        if report.job:
            if norm(job.name) != norm(report.job):
                continue
            if job.host and report.host and norm(job.host) != norm(report.host):
                continue
        elif not report.host or norm(job.host or job.name) != norm(report.host):
            continue
        candidates.append(job)
    if len(candidates) > 1:
        # the same job name at two comuni: the sender's ente decides
        entes = {e.name for e in (cfg.ente_for(s) for s in senders) if e is not None}
        preferred = [j for j in candidates if ente_of(cfg, j).name in entes]
        candidates = preferred or candidates
    return candidates[0] if candidates else None


def ente_of(cfg: Config, job: BackupJobConfig) -> EnteConfig:
    ente = cfg.ente_by_name(job.ente)
    assert ente is not None, "validated at load"
    return ente


def job_by_key(cfg: Config, key: str) -> BackupJobConfig | None:
    return next((j for j in cfg.backup_job if j.key == key), None)


# -- schedule ---------------------------------------------------------------------------


def _at(day: date, t: time, cfg: Config) -> datetime:
    return datetime.combine(day, t, tzinfo=cfg.service.tz).astimezone(UTC)


def _closed(cfg: Config, job: BackupJobConfig):
    """day -> True when the job's schedule skips it as a holiday of the ente."""
    if not job.skips_holidays:
        return lambda day: False
    from maild.sla.deadline import ticket_calendar

    calendar = ticket_calendar(cfg, ente_of(cfg, job), "BASSA")
    return calendar.is_closed


def iter_deadlines(cfg: Config, job: BackupJobConfig, after: datetime) -> Iterator[datetime]:
    """The job's deadlines strictly after `after`, in order, up to a year ahead."""
    tz = cfg.service.tz
    t = job.expected_time
    closed = _closed(cfg, job)
    end = after + _HORIZON
    if job.schedule in ("daily", "weekdays"):
        day = after.astimezone(tz).date()
        while (due := _at(day, t, cfg)) <= end:
            weekday_ok = job.schedule == "daily" or day.weekday() < 5
            if due > after and weekday_ok and not closed(day):
                yield due
            day += timedelta(days=1)
        return
    from croniter import CroniterError, croniter

    # a run up to a day before `after` may still have its report due after it
    runs = croniter(job.schedule, (after - timedelta(days=1)).astimezone(tz))
    last: datetime | None = None
    while True:
        try:
            run: datetime = runs.get_next(datetime)
        except CroniterError:
            return
        local = run.astimezone(tz)
        day = local.date() if local.time() <= t else local.date() + timedelta(days=1)
        due = _at(day, t, cfg)
        if due > end:
            return
        if due > after and due != last and not closed(day):
            last = due
            yield due


def deadlines_between(
    cfg: Config, job: BackupJobConfig, after: datetime, until: datetime
) -> list[datetime]:
    """Deadlines in (after, until]."""
    out = []
    for due in iter_deadlines(cfg, job, after):
        if due > until:
            break
        out.append(due)
    return out


def next_deadline(cfg: Config, job: BackupJobConfig, after: datetime) -> datetime | None:
    return next(iter_deadlines(cfg, job, after), None)


def previous_deadline(cfg: Config, job: BackupJobConfig, before: datetime) -> datetime | None:
    """The newest deadline strictly before `before` (None if none within a year)."""
    for span in (8, 40, 400):
        found = [
            d
            for d in deadlines_between(cfg, job, before - timedelta(days=span), before)
            if d < before
        ]
        if found:
            return found[-1]
    return None


# -- state ------------------------------------------------------------------------------


def lock_state(
    session: Session, job_key: str, now: datetime, *, skip_locked: bool = False
) -> BackupJobState | None:
    """The job's state row, created if new and locked until the transaction ends: every
    writer about a job goes through here, so two never open two incidents. With
    `skip_locked`, None when another transaction holds it (PostgreSQL; SQLite serialises
    writers anyway)."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert(BackupJobState)
        .values(job_key=job_key, created_at=now, consecutive_failures=0)
        .on_conflict_do_nothing()
    )
    query = (
        select(BackupJobState)
        .where(BackupJobState.job_key == job_key)
        .with_for_update(skip_locked=skip_locked)
        .execution_options(populate_existing=True)
    )
    return session.scalars(query).first()
