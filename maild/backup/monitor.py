"""Periodic backup jobs: reports that never arrived, and the morning summary.

Missing reports: at each deadline of a job (`expected_by` on a scheduled day) the monitor
looks for a report of that job received since the previous deadline; if there is none,
the run is missed and an incident is opened (or the open one extended). Each judged
deadline is a `BackupCheck` row, unique per (job, deadline), written under the job's
state lock in the same transaction as the incident: a deadline is judged exactly once,
whatever the restarts and however many instances run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import exists, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from maild.backup.config import BackupJobConfig
from maild.backup.incidents import Unit, record_missed
from maild.backup.jobs import (
    deadlines_between,
    ente_of,
    lock_state,
    next_deadline,
    previous_deadline,
)
from maild.backup.models import (
    BackupCheck,
    BackupJobState,
    BackupRun,
    BackupSummary,
    BackupUnknownJob,
)
from maild.log import get_logger
from maild.models import Ticket
from maild.notify import Outgoing

if TYPE_CHECKING:
    from maild.ingest import Runtime

log = get_logger("maild.backup.monitor")
BUSY_RETRY = timedelta(seconds=5)  # another instance holds a job: look again shortly


class MissingReportMonitor:
    name = "backup_missing_reports"

    def __init__(self, rt: Runtime, startup_grace: timedelta | None = None) -> None:
        if startup_grace is None:
            startup_grace = timedelta(seconds=rt.cfg.backup.startup_grace_seconds)
        # the inbox is read at start: reports waiting there must count before judging
        self.not_before = rt.clock.now() + startup_grace

    def run_due(self, rt: Runtime) -> datetime | None:
        now = rt.clock.now()
        if now < self.not_before:
            return self.not_before
        upcoming: list[datetime] = []
        for job in rt.cfg.backup_job:
            try:
                nxt = self.check_job(rt, job, now)
            except Exception:  # one job's trouble must not hide the others'
                log.exception("backup_check_failed", job=job.name, ente=job.ente)
                nxt = now + timedelta(minutes=1)
            if nxt is not None:
                upcoming.append(nxt)
        return min(upcoming, default=None)

    def check_job(self, rt: Runtime, job: BackupJobConfig, now: datetime) -> datetime | None:
        """Judge the job's deadlines up to `now`; return its next deadline."""
        cfg = rt.cfg
        with rt.db.transaction() as session:
            state = lock_state(session, job.key, now, skip_locked=True)
            if state is None:
                return now + BUSY_RETRY
            since = max(
                state.created_at,
                state.last_checked_due or state.created_at,
                now - timedelta(days=cfg.backup.lookback_days),
            )
            for due in deadlines_between(cfg, job, since, now):
                done = session.scalar(
                    select(
                        exists().where(BackupCheck.job_key == job.key, BackupCheck.due_at == due)
                    )
                )
                if not done:
                    self._judge(Unit(rt, session, now), job, state, due)
                state.last_checked_due = due
        return next_deadline(cfg, job, now)

    def _judge(
        self, unit: Unit, job: BackupJobConfig, state: BackupJobState, due: datetime
    ) -> None:
        window_start = previous_deadline(unit.rt.cfg, job, due) or due - timedelta(days=1)
        received = unit.session.scalar(
            select(
                exists().where(BackupRun.job_key == job.key, BackupRun.received_at > window_start)
            )
        )
        check = BackupCheck(
            job_key=job.key,
            due_at=due,
            checked_at=unit.now,
            outcome="received" if received else "missed",
        )
        unit.session.add(check)
        unit.session.flush()  # the unique (job, deadline) row first: a duplicate fails here
        if not received:
            log.warning("backup_report_missing", job=job.name, ente=job.ente, due=due.isoformat())
            check.ticket_id = record_missed(unit, job, state, due).id


class MorningSummary:
    """Every job's result of the night to the operators, failures first, once a day."""

    name = "backup_morning_summary"
    LATE_LIMIT = timedelta(hours=3)  # started long after the hour: skip the day

    def run_due(self, rt: Runtime) -> datetime | None:
        cfg = rt.cfg
        at = cfg.backup.summary_time
        if at is None:
            return None
        tz = cfg.service.tz
        now = rt.clock.now()
        today = now.astimezone(tz).date()
        moment = datetime.combine(today, at, tzinfo=tz).astimezone(UTC)
        if now < moment:
            return moment
        if now - moment <= self.LATE_LIMIT:
            self.send(rt, today, moment, now)
        tomorrow = today + timedelta(days=1)
        return datetime.combine(tomorrow, at, tzinfo=tz).astimezone(UTC)

    def send(self, rt: Runtime, day, moment: datetime, now: datetime) -> bool:
        """Send the summary of `day` unless some instance already did."""
        with rt.db.transaction() as session:
            insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
            claimed = session.execute(
                insert(BackupSummary)
                .values(day=day, sent_at=now)
                .on_conflict_do_nothing()
                .returning(BackupSummary.day)
            ).first()
            if claimed is None:
                return False
            rows, unknown = night_results(rt, session, moment)
            counts = {k: sum(1 for r in rows if r["outcome"] == k) for k in ORDER}
            subject, text, html = rt.notifier.render(
                "backup_summary", day=day, rows=rows, counts=counts, unknown=unknown
            )
            rt.notifier.enqueue(
                session,
                Outgoing(
                    kind="backup_summary",
                    to=[rt.cfg.backup.summary_to or rt.cfg.service.operators_address],
                    subject=subject,
                    text=text,
                    html=html,
                    auto_submitted="auto-generated",
                ),
                now,
            )
        return True


ORDER = {"failure": 0, "missing": 1, "warning": 2, "success": 3, "not_due": 4}


def night_results(rt: Runtime, session, moment: datetime) -> tuple[list[dict], list[str]]:
    """Each job's newest report of the 24 hours before `moment`, or whether it was due."""
    cfg = rt.cfg
    since = moment - timedelta(days=1)
    rows = []
    for job in cfg.backup_job:
        run = session.scalars(
            select(BackupRun)
            .where(
                BackupRun.job_key == job.key,
                BackupRun.received_at > since,
                BackupRun.received_at <= moment,
            )
            .order_by(BackupRun.received_at.desc(), BackupRun.id.desc())
            .limit(1)
        ).first()
        state = session.get(BackupJobState, job.key)
        ticket = (
            session.get(Ticket, state.open_ticket_id) if state and state.open_ticket_id else None
        )
        if run is not None:
            outcome, error = run.status, run.error
        else:
            due = deadlines_between(cfg, job, since, moment)
            outcome, error = ("missing" if due else "not_due"), None
        rows.append(
            {
                "outcome": outcome,
                "ente": ente_of(cfg, job).name,
                "job": job.name,
                "error": error,
                "ticket": ticket.number if ticket is not None else None,
            }
        )
    rows.sort(key=lambda r: (ORDER[r["outcome"]], r["ente"], r["job"]))
    unknown = [
        u.job_name or u.host or u.name_key
        for u in session.scalars(
            select(BackupUnknownJob)
            .where(BackupUnknownJob.last_seen > since)
            .order_by(BackupUnknownJob.id)
        )
    ]
    return rows, unknown


def periodic_jobs(rt: Runtime) -> list:
    """The backup jobs the scheduler runs, given the configuration."""
    jobs: list = []
    if rt.cfg.backup_job:
        jobs.append(MissingReportMonitor(rt))
    if rt.cfg.backup.summary_time is not None:
        jobs.append(MorningSummary())
    return jobs
