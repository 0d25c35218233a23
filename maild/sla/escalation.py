"""SLA escalation: warnings before a deadline, the overdue mark ("scaduto") when it passes.

Levels are fractions of each target (config `[[sla.escalation]]`; default 75% reminder to
the operators, 100% overdue to the coordinators, 150% to the ente's referent, off).

Cost: the check reads only tickets whose `sla_check_at` has come, through its index, and
sets each one's next moment (the next level, or the deadline); a ticket no clock runs for
gets NULL and is never read again unless something changes it (see maild.sla.models).

Exactly once: a level reached is a row in `sla_escalations` (unique per ticket, target and
level), inserted by the check; its mails are queued right after, in the transaction that
sets the row's `notified_at` (so the check's cost does not include building mails, and a
crash in between only delays them). Tickets and rows are claimed with
`FOR UPDATE SKIP LOCKED`, so instances share the work. A priority change moves the
deadline; levels already fired stay fired, the others follow the new deadline.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from maild.config import Config, EscalationLevel
from maild.log import get_logger
from maild.models import Ticket
from maild.notify import Outgoing
from maild.sla.deadline import OPEN, TargetClock, ticket_clocks
from maild.sla.models import TAKE_CHARGE, SlaEscalation
from maild.tickets import record_event

if TYPE_CHECKING:
    from maild.ingest import Runtime
    from maild.scheduler import PeriodicJob

log = get_logger("maild.sla")

BATCH = 200  # tickets per transaction
RETRY = timedelta(seconds=5)  # due tickets another instance holds: look again soon
OPEN_LIST_LIMIT = 50  # open tickets of the assignee listed in the overdue mail


def percent(level: EscalationLevel) -> int:
    return round(level.fraction * 100)


def template_for(level: EscalationLevel) -> str:
    if level.fraction < 1:
        return "sla_reminder"
    return "sla_overdue" if percent(level) == 100 else "sla_escalation"


def coordinators(cfg: Config) -> list[str]:
    found = [o.email for o in cfg.operator if o.role == "coordinator"]
    return found or [cfg.service.operators_address]


class EscalationJob:
    name = "sla_escalation"

    def __init__(self, batch: int = BATCH) -> None:
        self.batch = batch

    def run_due(self, rt: Runtime) -> datetime | None:
        now = rt.clock.now()
        while self.check(rt, now) == self.batch:
            pass
        while self.notify(rt, now) == self.batch:
            pass
        with rt.db.session() as s:
            nxt = s.scalar(select(func.min(Ticket.sla_check_at)))
        if nxt is not None and nxt <= now:
            return now + RETRY  # held by another instance, or changed since
        return nxt

    # -- phase 1: the check ---------------------------------------------------------------

    def check(self, rt: Runtime, now: datetime) -> int:
        """Evaluate one batch of due tickets in one transaction: record the levels reached,
        mark the overdue ones, set each one's next moment. Returns how many tickets."""
        with rt.db.transaction() as s, s.no_autoflush:
            tickets = s.scalars(
                select(Ticket)
                .where(Ticket.sla_check_at <= now)
                .order_by(Ticket.sla_check_at, Ticket.id)
                .limit(self.batch)
                .with_for_update(skip_locked=True)
            ).all()
            if not tickets:
                return 0
            fired = set(
                s.execute(
                    select(
                        SlaEscalation.ticket_id, SlaEscalation.target, SlaEscalation.level
                    ).where(SlaEscalation.ticket_id.in_([t.id for t in tickets]))
                ).all()
            )
            reached: list[dict] = []
            for ticket in tickets:
                reached += self._evaluate(rt, s, ticket, now, fired)
            if reached:
                # the unique constraint has the last word: a level recorded before stays
                insert = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
                s.execute(insert(SlaEscalation).on_conflict_do_nothing(), reached)
                numbers = {t.id: t.number for t in tickets}
                log.info(  # one line per batch: the check stays cheap when many are due
                    "sla_levels_reached",
                    count=len(reached),
                    levels=[
                        f"{numbers[r['ticket_id']]}:{r['target']}:{r['level']}%"
                        for r in reached[:20]
                    ],
                )
            return len(tickets)

    def _evaluate(
        self, rt: Runtime, s: Session, ticket: Ticket, now: datetime, fired: set[tuple]
    ) -> list[dict]:
        levels = [lv for lv in rt.cfg.sla.escalation if lv.enabled]
        moments: list[datetime] = []
        reached = []
        for clock in ticket_clocks(rt.cfg, s, ticket, now):
            if not clock.running:
                continue  # taken in charge / resolved: no more warnings for this target
            if clock.reached(1.0) and not ticket.overdue:
                ticket.overdue = True
                record_event(s, ticket, now, "maild", "overdue", "False", "True")
            elif not clock.reached(1.0):
                moments.append(clock.moment(now, 1.0))  # the overdue mark needs no level
            for level in levels:
                if (ticket.id, clock.target, percent(level)) in fired:
                    continue
                if clock.reached(level.fraction):
                    reached.append(
                        dict(
                            ticket_id=ticket.id,
                            target=clock.target,
                            level=percent(level),
                            priority=ticket.priority,
                            fired_at=now,
                        )
                    )
                else:
                    moments.append(clock.moment(now, level.fraction))
        ticket.sla_check_at = min(moments) if moments else None
        return reached

    # -- phase 2: the mails ---------------------------------------------------------------

    def notify(self, rt: Runtime, now: datetime) -> int:
        """Queue the mails of one batch of recorded, not yet notified levels, in the
        transaction that marks them notified. Returns how many levels."""
        with rt.db.transaction() as s, s.no_autoflush:
            pending = s.scalars(
                select(SlaEscalation)
                .where(SlaEscalation.notified_at.is_(None))
                .order_by(SlaEscalation.id)
                .limit(self.batch)
                .with_for_update(skip_locked=True)
            ).all()
            if not pending:
                return 0
            tickets = {
                t.id: t
                for t in s.scalars(
                    select(Ticket).where(Ticket.id.in_({p.ticket_id for p in pending}))
                )
            }
            open_lists: dict[str, list] = {}
            for row in pending:
                ticket = tickets[row.ticket_id]
                clock = next(
                    (c for c in ticket_clocks(rt.cfg, s, ticket, now) if c.target == row.target),
                    None,
                )
                if clock is not None:
                    level = self._level(rt.cfg, row.level)
                    for out in self._mails(rt, s, ticket, clock, level, now, open_lists):
                        rt.notifier.enqueue(s, out, now)
                row.notified_at = now
            return len(pending)

    @staticmethod
    def _level(cfg: Config, pct: int) -> EscalationLevel:
        for level in cfg.sla.escalation:
            if percent(level) == pct:
                return level
        # recorded under a configuration that has changed since: tell the coordinators
        return EscalationLevel(fraction=pct / 100, notify=["coordinators"])

    def _mails(
        self,
        rt: Runtime,
        s: Session,
        ticket: Ticket,
        clock: TargetClock,
        level: EscalationLevel,
        now: datetime,
        open_lists: dict[str, list],
    ) -> list[Outgoing]:
        cfg = rt.cfg
        ente = cfg.ente_by_name(ticket.ente) if ticket.ente else None
        internal: list[str] = []
        if "operators" in level.notify:
            internal.append(cfg.service.operators_address)
        if "coordinators" in level.notify:
            internal += coordinators(cfg)
        if "assignee" in level.notify and ticket.assignee:
            internal.append(ticket.assignee)
        internal = list(dict.fromkeys(internal))
        referent = ente.referent if ente and "referent" in level.notify else None
        open_tickets = []
        if percent(level) >= 100 and ticket.assignee:
            if ticket.assignee not in open_lists:
                open_lists[ticket.assignee] = self._open_tickets(s, ticket.assignee)
            open_tickets = open_lists[ticket.assignee]
        context = dict(
            ticket=ticket,
            ente=ente,
            target=clock.target,
            level=percent(level),
            due_at=self._deadline(ticket, clock, now),
            hours=round(clock.total.total_seconds() / 3600, 2),
            elapsed_hours=round(clock.elapsed.total_seconds() / 3600, 2),
            now=now,
            for_referent=False,
            open_tickets=open_tickets,
        )
        kind = template_for(level)
        outs = []
        if internal:
            subj, text, html = rt.notifier.render(kind, **context)
            outs.append(self._out(kind, ticket, internal, [], subj, text, html))
        if referent:
            context.update(for_referent=True, open_tickets=[])
            subj, text, html = rt.notifier.render(kind, **context)
            # the referent's copy says nothing internal; coordinators see it was sent
            outs.append(self._out(kind, ticket, [referent], coordinators(cfg), subj, text, html))
        return outs

    @staticmethod
    def _deadline(ticket: Ticket, clock: TargetClock, now: datetime) -> datetime | None:
        if clock.target == TAKE_CHARGE:
            return ticket.sla_due_at
        return None if clock.reached(1.0) else clock.moment(now, 1.0)

    @staticmethod
    def _out(kind, ticket, to, cc, subj, text, html) -> Outgoing:
        origin = [ticket.origin_message_id] if ticket.origin_message_id else []
        return Outgoing(
            kind=kind,
            ticket=ticket,
            to=to,
            cc=[a for a in cc if a not in to],
            subject=subj,
            text=text,
            html=html,
            references=origin,
            auto_submitted="auto-generated",
        )

    @staticmethod
    def _open_tickets(s: Session, assignee: str) -> list:
        """The assignee's open tickets (a few columns, not whole rows), soonest due first."""
        return list(
            s.execute(
                select(
                    Ticket.number,
                    Ticket.title,
                    Ticket.priority,
                    Ticket.status,
                    Ticket.sla_due_at,
                    Ticket.overdue,
                )
                .where(Ticket.assignee == assignee, Ticket.status.in_(OPEN))
                .order_by(Ticket.sla_due_at, Ticket.id)
                .limit(OPEN_LIST_LIMIT)
            ).all()
        )


def sla_jobs(cfg: Config) -> list[PeriodicJob]:
    """The SLA's periodic jobs, for maild.scheduler.default_jobs."""
    from maild.sla.digest import DigestJob

    jobs: list[PeriodicJob] = [EscalationJob()]
    if cfg.sla.digest:
        jobs.append(DigestJob())
    return jobs
