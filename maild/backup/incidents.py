"""Incident tickets of backup jobs: opened on failure, warning or a missing report, one
open incident per job, resolved by a later success.

Everything here runs inside the caller's transaction (a message's, or the monitor's) with
the job's state row locked (`jobs.lock_state`); operators' mails are queued in the same
transaction. The backup software is never written to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from maild.backup.config import BackupJobConfig, norm
from maild.backup.jobs import ente_of, lock_state
from maild.backup.models import BackupIncident, BackupJobState, BackupRun, BackupUnknownJob
from maild.backup.report import BackupReport
from maild.message import Attachment
from maild.models import OPEN_STATUSES, RISOLTO, Article, Ticket
from maild.notify import Outgoing
from maild.sla.deadline import take_charge_due
from maild.sla.priority import Priority
from maild.tickets import add_inbound_article, create_ticket, record_event

if TYPE_CHECKING:
    from maild.ingest import Runtime
    from maild.message import ParsedMessage

ACTOR = "maild-backup"
ORIGINAL_NAME = "report-originale.eml"
TITLES = {
    "it": {
        "failure": "Backup fallito",
        "warning": "Backup con avvisi",
        "missing": "Report di backup non ricevuto",
        "count": lambda n: (
            f"{n} {'fallimento consecutivo' if n == 1 else 'fallimenti consecutivi'}"
        ),
    },
    "en": {
        "failure": "Backup failed",
        "warning": "Backup with warnings",
        "missing": "Backup report not received",
        "count": lambda n: f"{n} consecutive failure{'' if n == 1 else 's'}",
    },
}


@dataclass
class Unit:
    """Where incident work happens: the runtime, the open transaction, the moment."""

    rt: Runtime
    session: Session
    now: datetime

    def enqueue(self, out: Outgoing) -> None:
        self.rt.notifier.enqueue(self.session, out, self.now)

    def render(self, name: str, **context) -> tuple[str, str, str]:
        return self.rt.notifier.render(name, **context)

    def render_text(self, name: str, **context) -> str:
        """A text-only template (ticket notes and article bodies)."""
        lang = self.rt.cfg.service.language
        template = self.rt.notifier.env.get_template(f"{lang}/{name}.txt.j2")
        return template.render({"service": self.rt.cfg.service, **context})


def title_for(unit: Unit, reason: str, job: BackupJobConfig, count: int) -> str:
    words = TITLES[unit.rt.cfg.service.language]
    return f"{words[reason]}: {job.name} ({words['count'](count)})"


def priority_for(unit: Unit, job: BackupJobConfig, reason: str) -> str:
    settings = unit.rt.cfg.backup
    if reason == "warning":
        return job.priority_warning or settings.priority_warning
    return job.priority_failure or settings.priority_failure


def open_incident(session: Session, state: BackupJobState) -> Ticket | None:
    """The job's incident if still open (operators may have resolved or closed it)."""
    if state.open_ticket_id is None:
        return None
    ticket = session.get(Ticket, state.open_ticket_id)
    if ticket is None or ticket.status not in OPEN_STATUSES:
        state.open_ticket_id = None
        return None
    return ticket


def _requester(unit: Unit, job: BackupJobConfig) -> str:
    """On the comune's behalf: its referent, else our own address (never the software)."""
    return ente_of(unit.rt.cfg, job).referent or unit.rt.cfg.service.address


def _new_incident(
    unit: Unit,
    job: BackupJobConfig,
    state: BackupJobState,
    reason: str,
    origin_message_id: str | None,
) -> Ticket:
    cfg = unit.rt.cfg
    ente = ente_of(cfg, job)
    priority = priority_for(unit, job, reason)
    ticket = create_ticket(
        unit.session,
        number_format=cfg.service.number_format,
        now=unit.now,
        local_year=unit.now.astimezone(cfg.service.tz).year,
        title=title_for(unit, reason, job, state.consecutive_failures),
        requester_email=_requester(unit, job),
        requester_name=cfg.service.name,
        ente=ente.name,
        priority=priority,
        kind="incidente",
        origin_message_id=origin_message_id,
        actor=ACTOR,
    )
    ticket.sla_due_at = take_charge_due(cfg, ente, priority, unit.now)
    unit.session.add(
        BackupIncident(ticket_id=ticket.id, job_key=job.key, reason=reason, opened_at=unit.now)
    )
    state.open_ticket_id = ticket.id
    return ticket


def _update_incident(
    unit: Unit, job: BackupJobConfig, state: BackupJobState, ticket: Ticket, reason: str
) -> None:
    """A further failure: the count in the title, a higher priority if it got worse."""
    title = title_for(unit, reason, job, state.consecutive_failures)
    if title != ticket.title:
        record_event(unit.session, ticket, unit.now, ACTOR, "title", ticket.title, title)
        ticket.title = title
    wanted = priority_for(unit, job, reason)
    if Priority.parse(wanted).rank > Priority.parse(ticket.priority).rank:
        record_event(unit.session, ticket, unit.now, ACTOR, "priority", ticket.priority, wanted)
        ticket.priority = wanted
        if ticket.taken_at is None:
            ente = ente_of(unit.rt.cfg, job)
            ticket.sla_due_at = take_charge_due(unit.rt.cfg, ente, wanted, ticket.created_at)
    ticket.updated_at = unit.now


def add_note(unit: Unit, ticket: Ticket, subject: str, text: str) -> Article:
    article = Article(
        ticket_id=ticket.id,
        direction="note",
        internal=True,
        sender=ACTOR,
        recipients=[],
        subject=subject,
        date=unit.now,
        body_text=text,
        created_at=unit.now,
    )
    unit.session.add(article)
    ticket.updated_at = unit.now
    return article


def _resolve(unit: Unit, ticket: Ticket, state: BackupJobState) -> None:
    record_event(unit.session, ticket, unit.now, ACTOR, "status", ticket.status, RISOLTO)
    ticket.status = RISOLTO
    ticket.resolved_at = unit.now
    link = unit.session.scalar(select(BackupIncident).where(BackupIncident.ticket_id == ticket.id))
    if link is not None:
        link.resolved_at = unit.now
    state.open_ticket_id = None


def _to_operators(unit: Unit, ticket: Ticket | None) -> list[str]:
    if ticket is not None and ticket.assignee:
        return [ticket.assignee]
    return [unit.rt.cfg.service.operators_address]


def _aware(unit: Unit, value: datetime | None) -> datetime | None:
    """Report times are naive local wall-clock times."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=unit.rt.cfg.service.tz)


# -- a report arrived -------------------------------------------------------------------


def record_report(
    unit: Unit,
    job: BackupJobConfig,
    report: BackupReport,
    msg: ParsedMessage,
    raw_sha256: str,
) -> tuple[str, Ticket | None]:
    """History, then the incident: opened, extended, or noted and resolved."""
    state = lock_state(unit.session, job.key, unit.now)
    assert state is not None
    run = _run(unit, job.key, ente_of(unit.rt.cfg, job).name, report, msg, raw_sha256)
    ticket = open_incident(unit.session, state)
    failures_before = state.consecutive_failures
    state.last_report_at = unit.now
    state.last_status = report.status
    if report.status == "success":
        state.consecutive_failures = 0
        if ticket is None:
            return "backup_ok", None
        run.ticket_id = ticket.id
        _recovered(unit, job, state, ticket, report, msg, raw_sha256, failures_before)
        return "backup_recovered", ticket

    state.consecutive_failures += 1
    reason = report.status
    if ticket is None:
        ticket = _new_incident(unit, job, state, reason, msg.message_id)
        outcome = "backup_incident"
    else:
        _update_incident(unit, job, state, ticket, reason)
        outcome = "backup_incident_updated"
    run.ticket_id = ticket.id
    context = dict(
        job=job,
        report=report,
        run=run,
        ticket=ticket,
        count=state.consecutive_failures,
        new=outcome == "backup_incident",
    )
    body = unit.render_text("backup_article", **context)
    _report_article(unit, ticket, msg, body, raw_sha256)
    _tell_operators(
        unit, ticket, msg, "backup_incident", body=body, attach_original=True, **context
    )
    return outcome, ticket


def _recovered(
    unit: Unit,
    job: BackupJobConfig,
    state: BackupJobState,
    ticket: Ticket,
    report: BackupReport,
    msg: ParsedMessage,
    raw_sha256: str,
    failures: int,
) -> None:
    resolve = unit.rt.cfg.backup.resolve_on_success
    context = dict(job=job, report=report, ticket=ticket, failures=failures, resolved=resolve)
    body = unit.render_text("backup_recovered_note", **context)
    _report_article(unit, ticket, msg, body, raw_sha256)
    if resolve:
        _resolve(unit, ticket, state)
    _tell_operators(unit, ticket, msg, "backup_resolved", body=body, **context)


def _tell_operators(
    unit: Unit,
    ticket: Ticket,
    msg: ParsedMessage,
    kind: str,
    /,
    attach_original: bool = False,
    **context,
) -> None:
    """The operators' mail about a report, threaded on the incident (`context`, with the
    ticket in it, goes to the template)."""
    subject, text, html = unit.render(kind, **context)
    unit.enqueue(
        Outgoing(
            kind=kind,
            ticket=ticket,
            to=_to_operators(unit, ticket),
            subject=subject,
            text=text,
            html=html,
            in_reply_to=ticket.origin_message_id,
            references=[r for r in (ticket.origin_message_id, msg.message_id) if r],
            auto_submitted="auto-generated",
            attachments=[(ORIGINAL_NAME, "message/rfc822", msg.raw)] if attach_original else [],
        )
    )


def _report_article(
    unit: Unit, ticket: Ticket, msg: ParsedMessage, body: str, raw_sha256: str
) -> None:
    """The report on the ticket, internal (it is machine mail), the original attached."""
    add_inbound_article(
        unit.session,
        unit.rt.blobs,
        ticket,
        msg,
        body_text=body,
        raw_sha256=raw_sha256,
        now=unit.now,
        internal=True,
        extra_attachments=(Attachment(ORIGINAL_NAME, "message/rfc822", msg.raw),),
    )


def _run(
    unit: Unit,
    job_key: str | None,
    ente: str | None,
    report: BackupReport,
    msg: ParsedMessage,
    raw_sha256: str,
) -> BackupRun:
    run = BackupRun(
        job_key=job_key,
        ente=ente,
        product=report.product[:40],
        variant=report.variant,
        job_name=report.job,
        host=report.host,
        status=report.status,
        started_at=_aware(unit, report.start),
        ended_at=_aware(unit, report.end),
        size=report.size,
        error=report.error,
        sender=msg.sender.email,
        message_id=msg.message_id,
        raw_sha256=raw_sha256,
        received_at=unit.now,
    )
    unit.session.add(run)
    return run


# -- a report did not arrive ------------------------------------------------------------


def record_missed(
    unit: Unit, job: BackupJobConfig, state: BackupJobState, due_at: datetime
) -> Ticket:
    """A missed run (the caller holds the job's lock and recorded the check)."""
    state.consecutive_failures += 1
    ticket = open_incident(unit.session, state)
    new = ticket is None
    if ticket is None:
        ticket = _new_incident(unit, job, state, "missing", None)
    else:
        _update_incident(unit, job, state, ticket, "missing")
    context = dict(
        job=job,
        ticket=ticket,
        due_at=due_at,
        last_report_at=state.last_report_at,
        count=state.consecutive_failures,
        new=new,
    )
    body = unit.render_text("backup_missing_note", **context)
    subject, text, html = unit.render("backup_missing", body=body, **context)
    add_note(unit, ticket, subject, body)
    unit.enqueue(
        Outgoing(
            kind="backup_missing",
            ticket=ticket,
            to=_to_operators(unit, ticket),
            subject=subject,
            text=text,
            html=html,
            in_reply_to=ticket.origin_message_id,
            references=[ticket.origin_message_id] if ticket.origin_message_id else [],
            auto_submitted="auto-generated",
        )
    )
    return ticket


# -- a report of no configured job ------------------------------------------------------


def record_unknown(unit: Unit, report: BackupReport, msg: ParsedMessage, raw_sha256: str) -> str:
    """Kept in the history; the operators hear of each product and job name once."""
    _run(unit, None, None, report, msg, raw_sha256)
    name_key = norm(report.job or report.host or "?")[:400]
    dialect = unit.session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    created = unit.session.execute(
        insert(BackupUnknownJob)
        .values(
            product=report.product[:40],
            name_key=name_key,
            job_name=report.job,
            host=report.host,
            sender=msg.sender.email,
            first_seen=unit.now,
            last_seen=unit.now,
            last_status=report.status,
            reports=1,
        )
        .on_conflict_do_nothing()
        .returning(BackupUnknownJob.id)
    ).first()
    if created is None:
        row = unit.session.scalar(
            select(BackupUnknownJob)
            .where(
                BackupUnknownJob.product == report.product[:40],
                BackupUnknownJob.name_key == name_key,
            )
            .with_for_update()
        )
        row.last_seen = unit.now
        row.last_status = report.status
        row.reports += 1
        row.sender = msg.sender.email
        return "backup_unknown_job"
    subject, text, html = unit.render(
        "backup_unknown", report=report, sender=msg.sender.email, subject=msg.subject
    )
    unit.enqueue(
        Outgoing(
            kind="backup_unknown",
            to=[unit.rt.cfg.service.operators_address],
            subject=subject,
            text=text,
            html=html,
            auto_submitted="auto-generated",
            attachments=[(ORIGINAL_NAME, "message/rfc822", msg.raw)],
        )
    )
    return "backup_unknown_job"
