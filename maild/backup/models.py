"""Backup control tables: job state, run history, incidents, judged deadlines, notices.

Jobs are identified by `BackupJobConfig.key` (ente, product, name, host), so history
survives reordering the configuration. Exactly-once is carried by unique constraints:
one `BackupCheck` per (job, deadline), one `BackupUnknownJob` per product and job name,
one `BackupSummary` per local day. Writers about a job lock its `BackupJobState` row
first, so reports and the missing-report monitor never open two incidents for a job.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from maild.models import Base

KEY = 600  # ente | product | name | host


class BackupJobState(Base):
    """One row per configured job: the lock writers take, and what `status` shows."""

    __tablename__ = "backup_job_state"

    job_key: Mapped[str] = mapped_column(String(KEY), primary_key=True)
    created_at: Mapped[datetime]  # deadlines before this are not judged (new job)
    last_report_at: Mapped[datetime | None]
    last_status: Mapped[str | None] = mapped_column(String(10))
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    open_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    last_checked_due: Mapped[datetime | None]  # the newest deadline judged


class BackupRun(Base):
    """Every report received, of a configured job or not (job_key NULL): the job history."""

    __tablename__ = "backup_runs"
    __table_args__ = (Index("ix_backup_runs_job", "job_key", "received_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_key: Mapped[str | None] = mapped_column(String(KEY))
    ente: Mapped[str | None] = mapped_column(String(200))
    product: Mapped[str] = mapped_column(String(40))
    variant: Mapped[str | None] = mapped_column(String(60))
    job_name: Mapped[str | None] = mapped_column(String(400))
    host: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(10))  # success | warning | failure
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    size: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(Text)
    sender: Mapped[str] = mapped_column(String(320), default="")
    message_id: Mapped[str | None] = mapped_column(String(998))
    raw_sha256: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime]
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))


class BackupIncident(Base):
    """Which incident tickets belong to which job, and why they were opened."""

    __tablename__ = "backup_incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), unique=True)
    job_key: Mapped[str] = mapped_column(String(KEY), index=True)
    reason: Mapped[str] = mapped_column(String(10))  # failure | warning | missing
    opened_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]


class BackupCheck(Base):
    """One judged deadline of a job: a report had arrived, or the run was missed."""

    __tablename__ = "backup_checks"
    __table_args__ = (UniqueConstraint("job_key", "due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_key: Mapped[str] = mapped_column(String(KEY))
    due_at: Mapped[datetime]
    checked_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(10))  # received | missed
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))


class BackupUnknownJob(Base):
    """Reports that match no configured job, once per product and job name."""

    __tablename__ = "backup_unknown_jobs"
    __table_args__ = (UniqueConstraint("product", "name_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product: Mapped[str] = mapped_column(String(40))
    name_key: Mapped[str] = mapped_column(String(400))  # normalised job name (or host)
    job_name: Mapped[str | None] = mapped_column(String(400))
    host: Mapped[str | None] = mapped_column(String(255))
    sender: Mapped[str] = mapped_column(String(320), default="")
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    last_status: Mapped[str] = mapped_column(String(10))
    reports: Mapped[int] = mapped_column(Integer, default=1)


class BackupSummary(Base):
    """The morning summary of one local day, sent once."""

    __tablename__ = "backup_summaries"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    sent_at: Mapped[datetime]
