"""Daily digest of overdue ("scaduti") open tickets to the coordinators, at the start of
the working day (or at `[sla] digest_time`), once per day whatever the restarts and
instances: the day is recorded in `sla_digests` in the transaction that queues the mail.
A daemon that starts later in the day still sends that day's digest; missed days are not
sent afterwards."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from maild.config import Config
from maild.log import get_logger
from maild.models import Ticket
from maild.notify import Outgoing
from maild.queries import precedence
from maild.sla.calendar import WorkingCalendar, calendar_for
from maild.sla.deadline import OPEN, calendar_config
from maild.sla.escalation import coordinators
from maild.sla.models import SlaDigest

if TYPE_CHECKING:
    from maild.ingest import Runtime

log = get_logger("maild.sla")


def service_calendar(cfg: Config) -> WorkingCalendar:
    """The consortium's own working days: weekly windows and national holidays."""
    return calendar_for(calendar_config(cfg), None, (), "MINIMAL", None)


def digest_moment(cfg: Config, day: date) -> datetime | None:
    """When the digest of `day` is due; None when `day` is not a working day."""
    cal = service_calendar(cfg)
    tz = cfg.service.tz
    midnight = datetime.combine(day, time(), tz)
    first = cal.next_working_moment(midnight)
    if first.astimezone(tz).date() != day:
        return None
    if cfg.sla.digest_time is not None:
        return datetime.combine(day, cfg.sla.digest_time, tz)
    return first


def next_digest_moment(cfg: Config, now: datetime) -> datetime:
    """The first digest moment after `now`."""
    day = now.astimezone(cfg.service.tz).date()
    for _ in range(400):
        moment = digest_moment(cfg, day)
        if moment is not None and moment > now:
            return moment
        day += timedelta(days=1)
    raise ValueError("no working day within a year: check [sla.calendar]")


def overdue_tickets(session, cfg: Config) -> list[Ticket]:
    rows = session.scalars(
        select(Ticket).where(
            Ticket.overdue.is_(True),
            Ticket.status.in_(OPEN),
            Ticket.merged_into_id.is_(None),
        )
    ).all()
    # as the queue: the ente's precedence, then the deadline
    return sorted(rows, key=lambda t: (-precedence(cfg, t.ente), t.sla_due_at or t.created_at))


def send_digest(rt: Runtime, day: date, now: datetime) -> int | None:
    """Queue the digest of `day` unless it was already sent; returns the number of
    tickets listed, None when the day had been done before."""
    with rt.db.transaction() as s:
        insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
        tickets = overdue_tickets(s, rt.cfg)
        done = s.execute(
            insert(SlaDigest)
            .values(day=day, sent_at=now, tickets=len(tickets))
            .on_conflict_do_nothing()
            .returning(SlaDigest.day)
        ).scalar()
        if done is None:
            return None
        if tickets:  # nothing overdue: no mail
            subj, text, html = rt.notifier.render("sla_digest", tickets=tickets, day=day, now=now)
            rt.notifier.enqueue(
                s,
                Outgoing(
                    kind="sla_digest",
                    to=coordinators(rt.cfg),
                    subject=subj,
                    text=text,
                    html=html,
                    auto_submitted="auto-generated",
                ),
                now,
            )
    log.info("sla_digest", day=day.isoformat(), tickets=len(tickets))
    return len(tickets)


class DigestJob:
    name = "sla_digest"

    def run_due(self, rt: Runtime) -> datetime:
        now = rt.clock.now()
        today = now.astimezone(rt.cfg.service.tz).date()
        moment = digest_moment(rt.cfg, today)
        if moment is not None and moment <= now:
            send_digest(rt, today, now)
        return next_digest_moment(rt.cfg, now)
