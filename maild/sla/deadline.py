"""SLA deadlines and clocks: the contract's targets in working hours on the ente's calendar."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.config import Config, EnteConfig
from maild.models import Ticket, TicketEvent
from maild.sla.calendar import CalendarConfig, WorkingCalendar, calendar_for
from maild.sla.models import CHECK_NOW, RESOLUTION, TAKE_CHARGE
from maild.tickets import record_event

_CALENDARS: dict[int, tuple[Config, CalendarConfig]] = {}


def calendar_config(cfg: Config) -> CalendarConfig:
    """The CalendarConfig of a loaded configuration (built once per Config object)."""
    hit = _CALENDARS.get(id(cfg))
    if hit is not None and hit[0] is cfg:
        return hit[1]
    cal = CalendarConfig.from_dict({"timezone": cfg.service.timezone, **cfg.sla.calendar})
    _CALENDARS[id(cfg)] = (cfg, cal)
    return cal


def ticket_calendar(cfg: Config, ente: EnteConfig | None, priority: str) -> WorkingCalendar:
    """Working time for a ticket: the ente's holidays and patron saint, and Saturday
    on-call only where its profile and the ticket's priority grant it."""
    return calendar_for(
        calendar_config(cfg),
        ente.province if ente else None,
        ente.closed_days if ente else (),
        ente.profile if ente else "MINIMAL",
        priority,
    )


def take_charge_target(cfg: Config, priority: str) -> timedelta:
    return timedelta(hours=cfg.sla.take_charge_hours[priority])


def take_charge_due(
    cfg: Config, ente: EnteConfig | None, priority: str, received_at: datetime
) -> datetime:
    """The clock starts at reception (or the next working moment) and runs for the target."""
    cal = ticket_calendar(cfg, ente, priority)
    return cal.add_working_time(received_at, take_charge_target(cfg, priority))


# -- clocks of one ticket -------------------------------------------------------------------

OPEN = ("nuovo", "in_carico", "in_attesa")
IN_ATTESA = "in_attesa"


@dataclass(frozen=True)
class TargetClock:
    """One SLA clock of one ticket: how much working time it has used of its target."""

    target: str  # TAKE_CHARGE | RESOLUTION
    total: timedelta  # the target in working time
    elapsed: timedelta  # working time used up to `now` (or to when the clock stopped)
    running: bool  # False once stopped (taken, resolved, closed)
    paused: bool  # running but not counting (resolution clock while in_attesa)
    calendar: WorkingCalendar

    def reached(self, fraction: float) -> bool:
        return self.elapsed >= self.total * fraction

    def moment(self, now: datetime, fraction: float) -> datetime:
        """When `fraction` of the target is reached if the clock keeps running from `now`
        (for a paused clock: the earliest moment it could be reached)."""
        remaining = self.total * fraction - self.elapsed
        return self.calendar.add_working_time(now, max(remaining, timedelta(0)))

    @property
    def breached(self) -> bool:
        return self.elapsed >= self.total if self.running else self.elapsed > self.total


def _stopped_at(ticket: Ticket, *moments: datetime | None) -> datetime | None:
    for m in moments:
        if m is not None:
            return m
    if ticket.status not in OPEN or ticket.merged_into_id is not None:
        return ticket.updated_at  # stopped without a recorded moment: by its last change
    return None


def take_charge_clock(cfg: Config, ticket: Ticket, now: datetime) -> TargetClock | None:
    """From reception to `taken_at`, against the stored deadline (`sla_due_at`), which
    already reflects the priority in force."""
    if ticket.sla_due_at is None:
        return None
    ente = cfg.ente_by_name(ticket.ente) if ticket.ente else None
    cal = ticket_calendar(cfg, ente, ticket.priority)
    stop = _stopped_at(ticket, ticket.taken_at, ticket.resolved_at, ticket.closed_at)
    end = min(now, stop) if stop is not None else now
    return TargetClock(
        TAKE_CHARGE,
        cal.working_time_between(ticket.created_at, ticket.sla_due_at),
        cal.working_time_between(ticket.created_at, end),
        stop is None,
        False,
        cal,
    )


def waiting_intervals(
    session: Session, ticket: Ticket, now: datetime
) -> list[tuple[datetime, datetime]]:
    """When the ticket waited for the requester, from its status history."""
    events = session.scalars(
        select(TicketEvent)
        .where(TicketEvent.ticket_id == ticket.id, TicketEvent.field == "status")
        .order_by(TicketEvent.at, TicketEvent.id)
    ).all()
    spans, since = [], None
    for e in events:
        if e.new_value == IN_ATTESA and since is None:
            since = e.at
        elif e.new_value != IN_ATTESA and since is not None:
            spans.append((since, e.at))
            since = None
    if since is None and ticket.status == IN_ATTESA:
        since = now  # no event recorded: count it as waiting from now on
    if since is not None:
        spans.append((since, max(since, now)))
    return spans


def resolution_clock(
    cfg: Config, session: Session, ticket: Ticket, now: datetime
) -> TargetClock | None:
    """From reception to `resolved_at`, not counting the time spent `in_attesa`."""
    hours = cfg.sla.resolution_hours.get(ticket.priority)
    if not hours:
        return None
    ente = cfg.ente_by_name(ticket.ente) if ticket.ente else None
    cal = ticket_calendar(cfg, ente, ticket.priority)
    stop = _stopped_at(ticket, ticket.resolved_at, ticket.closed_at)
    end = min(now, stop) if stop is not None else now
    elapsed = cal.working_time_between(ticket.created_at, end)
    for a, b in waiting_intervals(session, ticket, end):
        elapsed -= cal.working_time_between(max(a, ticket.created_at), min(b, end))
    return TargetClock(
        RESOLUTION,
        timedelta(hours=hours),
        max(elapsed, timedelta(0)),
        stop is None,
        stop is None and ticket.status == IN_ATTESA,
        cal,
    )


def ticket_clocks(
    cfg: Config, session: Session, ticket: Ticket, now: datetime
) -> list[TargetClock]:
    clocks = [take_charge_clock(cfg, ticket, now), resolution_clock(cfg, session, ticket, now)]
    return [c for c in clocks if c is not None]


def reprioritise(
    session: Session,
    cfg: Config,
    ticket: Ticket,
    new_priority: str,
    actor: str,
    now: datetime,
) -> bool:
    """Change a ticket's priority: the take-charge deadline is recomputed from reception
    with the new target and calendar, both changes go into the history, and the
    escalation check looks at the ticket again (levels already fired are not repeated;
    the others follow the new deadline). Returns False when nothing changed."""
    if new_priority not in cfg.sla.take_charge_hours:
        raise ValueError(f"unknown priority {new_priority!r}")
    if new_priority == ticket.priority:
        return False
    ente = cfg.ente_by_name(ticket.ente) if ticket.ente else None
    old_priority, old_due = ticket.priority, ticket.sla_due_at
    ticket.priority = new_priority
    ticket.sla_due_at = take_charge_due(cfg, ente, new_priority, ticket.created_at)
    ticket.updated_at = now
    record_event(session, ticket, now, actor, "priority", old_priority, new_priority)
    record_event(
        session,
        ticket,
        now,
        actor,
        "sla_due_at",
        old_due.isoformat() if old_due else None,
        ticket.sla_due_at.isoformat(),
    )
    sync_overdue(session, cfg, ticket, actor, now)
    ticket.sla_check_at = CHECK_NOW
    return True


def sync_overdue(session: Session, cfg: Config, ticket: Ticket, actor: str, now: datetime) -> bool:
    """Keep the overdue mark in step with a moved deadline (a lower priority can lift
    it); the change goes into the history. Returns whether it changed."""
    overdue = any(c.breached for c in ticket_clocks(cfg, session, ticket, now))
    if overdue == ticket.overdue:
        return False
    record_event(session, ticket, now, actor, "overdue", str(ticket.overdue), str(overdue))
    ticket.overdue = overdue
    return True
