"""Ticket lifecycle: presa in carico, status changes, warranty window, automatic closing.

Every change goes through `_change`, which writes the ticket's history (who, when, old,
new) in the same transaction, so `maild ticket show` tells the whole story.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from maild.config import Config, EnteConfig, OperatorConfig
from maild.log import get_logger
from maild.models import CHIUSO, IN_ATTESA, IN_CARICO, NUOVO, OPEN_STATUSES, RISOLTO, Ticket
from maild.operators import notices
from maild.sla.deadline import reprioritise, sync_overdue, take_charge_due, ticket_calendar
from maild.tickets import record_event

if TYPE_CHECKING:
    from maild.ingest import Context, Runtime

log = get_logger("maild.operators")
SYSTEM = "maild"


@dataclass(frozen=True)
class Change:
    field: str  # status, assignee, priority, sla_due_at, category, ente, merged_into, note...
    old: str | None
    new: str | None


def _str(value: object) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _change(ctx: Context, ticket: Ticket, actor: str, field: str, old, new) -> Change:
    record_event(ctx.session, ticket, ctx.now, actor, field, _str(old), _str(new))
    ticket.updated_at = ctx.now
    return Change(field, _str(old), _str(new))


def lock(ctx: Context, ticket: Ticket) -> Ticket:
    """Re-read the ticket locked (PostgreSQL): the auto-close job or another worker may be
    changing it at this very moment."""
    ctx.session.refresh(ticket, with_for_update=True)
    return ticket


def ente_of(cfg: Config, ticket: Ticket) -> EnteConfig | None:
    return cfg.ente_by_name(ticket.ente) if ticket.ente else None


# -- status -------------------------------------------------------------------------------


def set_status(ctx: Context, ticket: Ticket, new: str, actor: str) -> Change | None:
    old = ticket.status
    if old == new:
        return None
    ticket.status = new
    if new == RISOLTO:
        ticket.resolved_at, ticket.closed_at = ctx.now, None
    elif new == CHIUSO:
        ticket.closed_at = ctx.now
    else:
        ticket.resolved_at = ticket.closed_at = None
    return _change(ctx, ticket, actor, "status", old, new)


def warranty_end(cfg: Config, ticket: Ticket) -> datetime:
    """End of the last working day of the warranty after the resolution (the contract's
    working days on the ente's calendar: holidays and patron saint excluded)."""
    assert ticket.resolved_at is not None
    days = cfg.lifecycle.warranty_working_days
    if days == 0:
        return ticket.resolved_at
    cal = ticket_calendar(cfg, ente_of(cfg, ticket), ticket.priority)
    tz = cfg.service.tz
    day = ticket.resolved_at.astimezone(tz).date()
    for _ in range(days):
        start = datetime.combine(day + timedelta(days=1), time(), tzinfo=tz)
        day = cal.add_working_time(start, timedelta(0)).astimezone(tz).date()
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=tz)


def requester_replied(ctx: Context, ticket: Ticket, actor: str) -> str:
    """What a requester's (or watcher's) reply does to the status:
    "resumed" (in attesa -> in carico), "reopened" (resolved, within the warranty),
    "closed" (the caller opens a new ticket), "" (nothing)."""
    if ticket.status == IN_ATTESA:
        set_status(ctx, ticket, IN_CARICO, actor)
        return "resumed"
    if ticket.status == RISOLTO:
        if ctx.now < warranty_end(ctx.cfg, ticket):
            set_status(ctx, ticket, IN_CARICO if ticket.assignee else NUOVO, actor)
            return "reopened"
        set_status(ctx, ticket, CHIUSO, SYSTEM)  # the auto-close job had not come yet
        return "closed"
    if ticket.status == CHIUSO:
        return "closed"
    return ""


# -- assignment -------------------------------------------------------------------------


def take_charge(ctx: Context, ticket: Ticket, op: OperatorConfig, actor: str) -> list[Change]:
    """Assign to `op`; the first assignment is the presa in carico (taken_at, in carico).
    The requester is told who took the request; on reassignment both operators are told."""
    changes: list[Change] = []
    previous = ticket.assignee
    if previous != op.email:
        ticket.assignee = op.email
        changes.append(_change(ctx, ticket, actor, "assignee", previous, op.email))
    if ticket.taken_at is None:
        ticket.taken_at = ctx.now
        changes.append(_change(ctx, ticket, actor, "taken_at", None, ctx.now))
    if ticket.status == NUOVO:
        changes.append(set_status(ctx, ticket, IN_CARICO, actor))
    if previous == op.email:
        return changes
    previous_name = notices.operator_name(ctx, previous)
    notices.to_requester(
        ctx,
        ticket,
        "assignment_notice",
        operator=op,
        previous=previous_name,
    )
    for to in dict.fromkeys(x for x in (previous, op.email) if x and x != actor):
        notices.to_operator(
            ctx,
            ticket,
            to,
            "operator_assigned",
            operator=op,
            previous=previous_name,
            actor=notices.operator_name(ctx, actor),
            recipient=to,
        )
    return changes


# -- other fields -------------------------------------------------------------------------


def set_priority(ctx: Context, ticket: Ticket, priority: str, actor: str) -> list[Change]:
    """A new priority moves the take-charge deadline (counted from reception); the SLA
    module does it and writes the history, we list the changes for the confirmation."""
    before = (ticket.priority, ticket.sla_due_at, ticket.overdue)
    if not reprioritise(ctx.session, ctx.cfg, ticket, priority, actor, ctx.now):
        return []
    after = (ticket.priority, ticket.sla_due_at, ticket.overdue)
    return [
        Change(field, _str(old), _str(new))
        for field, old, new in zip(
            ("priority", "sla_due_at", "overdue"), before, after, strict=True
        )
        if old != new
    ]


def set_ente(ctx: Context, ticket: Ticket, ente: EnteConfig, actor: str) -> list[Change]:
    if ticket.ente == ente.name:
        return []
    changes = [_change(ctx, ticket, actor, "ente", ticket.ente, ente.name)]
    ticket.ente = ente.name
    changes += _recompute_due(ctx, ticket, actor)  # another calendar (holidays, profile)
    return changes


def _recompute_due(ctx: Context, ticket: Ticket, actor: str) -> list[Change]:
    due = take_charge_due(ctx.cfg, ente_of(ctx.cfg, ticket), ticket.priority, ticket.created_at)
    if due == ticket.sla_due_at:
        return []
    old, ticket.sla_due_at = ticket.sla_due_at, due
    changes = [_change(ctx, ticket, actor, "sla_due_at", old, due)]
    was_overdue = ticket.overdue
    if sync_overdue(ctx.session, ctx.cfg, ticket, actor, ctx.now):  # history recorded there
        changes.append(Change("overdue", _str(was_overdue), _str(ticket.overdue)))
    return changes


def set_category(ctx: Context, ticket: Ticket, category: str, actor: str) -> list[Change]:
    if ticket.category == category:
        return []
    old, ticket.category = ticket.category, category
    return [_change(ctx, ticket, actor, "category", old, category)]


def merge_into(ctx: Context, ticket: Ticket, target: Ticket, actor: str) -> list[Change]:
    """This ticket continues in `target`: later mail on it lands there, its requester and
    watchers follow the target, and the requester is told once."""
    ticket.merged_into_id = target.id
    changes = [_change(ctx, ticket, actor, "merged_into", None, target.number)]
    record_event(ctx.session, target, ctx.now, actor, "merged_from", None, ticket.number)
    status = set_status(ctx, ticket, CHIUSO, actor)
    if status is not None:
        changes.append(status)
    people = [ticket.requester_email, *(ticket.watchers or [])]
    followers = [p for p in people if p != target.requester_email]
    target.watchers = list(dict.fromkeys([*(target.watchers or []), *followers]))
    target.updated_at = ctx.now
    notices.to_requester(ctx, ticket, "merge_notice", target=target)
    return changes


# -- automatic closing --------------------------------------------------------------------


class AutoCloseJob:
    """Closes resolved tickets whose warranty has run out. Rows are locked and skipped by
    other instances (PostgreSQL), and a closed ticket no longer matches: each closes once."""

    name = "auto_close"

    def run_due(self, rt: Runtime) -> datetime | None:
        now = rt.clock.now()
        next_at: datetime | None = None
        closed: list[str] = []
        with rt.db.transaction() as session:
            rows = session.scalars(
                select(Ticket)
                .where(Ticket.status == RISOLTO, Ticket.resolved_at.is_not(None))
                .order_by(Ticket.id)
                .with_for_update(skip_locked=True)
            ).all()
            for ticket in rows:
                end = warranty_end(rt.cfg, ticket)
                if end > now:
                    next_at = end if next_at is None else min(next_at, end)
                    continue
                ticket.status, ticket.closed_at, ticket.updated_at = CHIUSO, now, now
                record_event(session, ticket, now, SYSTEM, "status", RISOLTO, CHIUSO)
                closed.append(ticket.number)
        if closed:
            log.info("tickets_auto_closed", tickets=closed)
        return next_at


__all__ = [
    "OPEN_STATUSES",
    "AutoCloseJob",
    "Change",
    "lock",
    "merge_into",
    "requester_replied",
    "set_category",
    "set_ente",
    "set_priority",
    "set_status",
    "take_charge",
    "warranty_end",
]
