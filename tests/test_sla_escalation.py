"""SLA escalation through a realistic week, with an injected clock, on SQLite and PostgreSQL.

The week: Friday 3 April 2026 to Friday 10 April; Monday 6 April is Easter Monday (closed).
Office hours 08:30-12:30 and 14:00-18:00 Europe/Rome (CEST, UTC+2). Saturday on-call
08:30-12:30 counts for ALTA tickets of PRO entes (Vaiano Cremasco) and not for MINIMAL
ones (Bagnolo Cremasco). Levels: 75% operators, 100% coordinators, 150% referent and
coordinators (enabled here). All moments below are computed by hand.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text, update

from maild.clock import ManualClock
from maild.db import Database
from maild.ingest import InboundItem, Ingestor, Runtime
from maild.models import OutboxMessage, Ticket, TicketEvent
from maild.scheduler import default_jobs
from maild.sla.escalation import EscalationJob, sla_jobs
from maild.sla.models import CHECK_NOW, SlaDigest, SlaEscalation

from .conftest import make_config
from .mails import make_mail

ROME = ZoneInfo("Europe/Rome")
PRO = "m.rossi@comune.vaiano-cremasco.cr.it"  # Comune di Vaiano Cremasco, PRO, referent
MINIMAL = "g.verdi@comune.bagnolo-cremasco.cr.it"  # Comune di Bagnolo Cremasco, MINIMAL
OPERATORS = "operatori@consorzio.example"
COORDINATOR = "laura.bianchi@consorzio.example"
REFERENT = "ced@comune.vaiano-cremasco.cr.it"
MARIO = "mario.rossi@consorzio.example"
LEVELS = [
    {"fraction": 0.75, "notify": ["operators"]},
    {"fraction": 1.0, "notify": ["coordinators"]},
    {"fraction": 1.5, "notify": ["referent", "coordinators"]},
]


def local(day: int, hour: int, minute: int = 0, month: int = 4) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=ROME)


class Week:
    """Runs the periodic jobs as the scheduler does: at the moments they ask for."""

    def __init__(self, cfg, url: str, start: datetime) -> None:
        self.cfg = cfg
        self.clock = ManualClock(start)
        self.db = Database(url)
        self.db.upgrade()
        self.rt = Runtime.create(cfg, db=self.db, clock=self.clock)
        self.jobs = sla_jobs(cfg)
        self.next: dict[str, datetime | None] = {}

    def restart(self) -> None:
        """A new process on the same database: new Runtime, new jobs, no memory."""
        old = self.db
        self.db = Database(self.db.url)
        self.rt = Runtime.create(self.cfg, db=self.db, clock=self.clock)
        self.jobs = sla_jobs(self.cfg)
        self.next = {}
        old.dispose()

    def run(self) -> None:
        for job in self.jobs:
            self.next[job.name] = job.run_due(self.rt)

    def advance_to(self, target: datetime) -> None:
        for _ in range(1000):
            due = min((n for n in self.next.values() if n is not None), default=None)
            if due is None or due > target:
                break
            self.clock.set(max(due, self.clock.now()))
            self.run()
        else:
            raise AssertionError("jobs keep asking to run")
        self.clock.set(target)
        self.run()

    def ingest(self, sender: str, subject: str) -> str:
        raw = make_mail(sender=sender, subject=subject)
        result = Ingestor(self.rt).ingest(InboundItem(raw, "supporto"))
        assert result.outcome == "new_ticket"
        return result.ticket_number

    def ticket(self, number: str) -> Ticket:
        with self.db.session() as s:
            return s.scalar(select(Ticket).where(Ticket.number == number))

    def sla_mails(self) -> list[tuple[str, str | None, datetime, list[str], bytes]]:
        with self.db.session() as s:
            rows = s.execute(
                select(OutboxMessage, Ticket.number)
                .outerjoin(Ticket, Ticket.id == OutboxMessage.ticket_id)
                .where(OutboxMessage.kind.like("sla_%"))
                .order_by(OutboxMessage.id)
            ).all()
        return [
            (o.kind, number, o.created_at.astimezone(ROME), o.recipients, self.rt.notifier.wire(o))
            for o, number in rows
        ]


@pytest.fixture
def week(state_dir, db_url):
    cfg = make_config(state_dir, db_url=db_url, sla={"escalation": LEVELS})
    w = Week(cfg, db_url, local(3, 17))
    yield w
    w.db.dispose()


def test_realistic_week_each_level_once_across_a_restart(week: Week):
    # Friday 17:00, PRO comune, MEDIA (12 h): 1 h on Friday, Monday is Easter Monday,
    # 8 h on Tuesday, 3 h on Wednesday -> due Wednesday 11:30
    a = week.ingest(PRO, "Protocollo non si apre")
    assert week.ticket(a).sla_due_at == local(8, 11, 30)
    week.run()
    assert week.next["sla_escalation"] == local(7, 18)  # 75% = 9 h: Tuesday at closing

    # Saturday 09:00, ALTA (8 h) from both comuni
    week.advance_to(local(4, 9))
    b = week.ingest(MINIMAL, "[ALTA] server anagrafe fermo")
    c = week.ingest(PRO, "[ALTA] server anagrafe fermo")
    minimal, pro = week.ticket(b), week.ticket(c)
    assert (minimal.priority, pro.priority) == ("ALTA", "ALTA")
    assert minimal.sla_due_at == local(7, 18)  # no on-call: Tuesday 08:30 + 8 h
    assert pro.sla_due_at == local(7, 14, 30)  # on-call 3.5 h Saturday + 4.5 h Tuesday

    # Tuesday 09:00 the coordinator assigns A to Mario (not yet taken in charge)
    week.advance_to(local(7, 9))
    with week.db.transaction() as s:
        s.scalar(select(Ticket).where(Ticket.number == a)).assignee = MARIO

    # Tuesday 12:00: restart; the schedule is forgotten too (every ticket due for a look)
    week.advance_to(local(7, 12))
    assert [m[:3] for m in week.sla_mails()] == [("sla_reminder", c, local(7, 11))]
    week.restart()
    with week.db.transaction() as s:
        s.execute(update(Ticket).values(sla_check_at=CHECK_NOW))
    week.run()
    EscalationJob().run_due(week.rt)  # a second instance at the same moment
    assert len(week.sla_mails()) == 1

    # Tuesday 12:45, lunch break: BASSA (16 h) from 14:00 -> due Thursday 12:30
    week.advance_to(local(7, 12, 45))
    d = week.ingest(PRO, "[BASSA] cambio toner")
    assert week.ticket(d).sla_due_at == local(9, 12, 30)

    # Tuesday 14:00 Mario takes C in charge, before its deadline (14:30)
    week.advance_to(local(7, 14))
    with week.db.transaction() as s:
        t = s.scalar(select(Ticket).where(Ticket.number == c))
        t.assignee, t.taken_at, t.status = MARIO, week.clock.now(), "in_carico"

    week.advance_to(local(10, 13))
    mails = week.sla_mails()
    assert [(kind, number, at) for kind, number, at, _, _ in mails] == [
        ("sla_reminder", c, local(7, 11)),  # 6 h: 3.5 Saturday + 2.5 Tuesday
        ("sla_reminder", b, local(7, 16)),  # 6 h from Tuesday 08:30
        ("sla_reminder", a, local(7, 18)),
        ("sla_overdue", b, local(7, 18)),
        ("sla_digest", None, local(8, 8, 30)),
        ("sla_overdue", a, local(8, 11, 30)),
        ("sla_escalation", b, local(8, 12, 30)),  # 12 h; Bagnolo has no referent
        ("sla_reminder", d, local(8, 18)),  # 12 h: Tuesday 4 + Wednesday 8
        ("sla_digest", None, local(9, 8, 30)),
        ("sla_escalation", a, local(9, 9, 30)),  # 18 h
        ("sla_escalation", a, local(9, 9, 30)),  # the referent's copy
        ("sla_overdue", d, local(9, 12, 30)),
        ("sla_digest", None, local(10, 8, 30)),
        ("sla_escalation", d, local(10, 12, 30)),  # 24 h
        ("sla_escalation", d, local(10, 12, 30)),
    ]
    recipients = [sorted(m[3]) for m in mails]
    assert recipients[0] == [OPERATORS]
    assert recipients[3] == [COORDINATOR]
    assert recipients[9] == [COORDINATOR]
    assert recipients[10] == sorted([REFERENT, COORDINATOR])  # to the referent, cc coordinators
    assert all(
        r == [COORDINATOR] for r, m in zip(recipients, mails, strict=True) if m[0] == "sla_digest"
    )

    # the overdue mail lists the assignee's open tickets
    overdue_a = mails[5][4].decode("utf-8", "replace")
    assert f"[Ticket#{a}]" in overdue_a and "SCADUTA" in overdue_a
    assert f"Richieste aperte di {MARIO} (2)" in overdue_a and c in overdue_a
    referent_copy = mails[10][4].decode("utf-8", "replace")
    assert "Gentile referente" in referent_copy and MARIO not in referent_copy
    digest_thu = mails[8][4].decode("utf-8", "replace")
    assert a in digest_thu and b in digest_thu and c not in digest_thu

    flags = {n: week.ticket(n).overdue for n in (a, b, c, d)}
    assert flags == {a: True, b: True, c: False, d: True}
    with week.db.session() as s:
        assert (
            s.scalar(select(text("count(*)")).select_from(SlaEscalation)) == 10
        )  # C 75%; A, B, D 75, 100, 150%
        days = s.scalars(select(SlaDigest.day).order_by(SlaDigest.day)).all()
        marks = s.scalars(select(TicketEvent.ticket_id).where(TicketEvent.field == "overdue")).all()
    # no digest on Saturday, Sunday and Easter Monday
    assert [day.day for day in days] == [3, 7, 8, 9, 10]
    assert len(marks) == 3
    # nothing left to do for these tickets but the 150% level of C was never reached:
    # C was taken in charge, so its clock stopped and it needs no further look
    assert week.ticket(c).sla_check_at is None
    assert week.ticket(a).sla_check_at is None


def test_priority_change_restarts_only_levels_not_yet_passed(week: Week):
    week.clock.set(local(14, 9))  # Tuesday 14 April, an ordinary week
    n = week.ingest(PRO, "[ALTA] rete giù")
    assert week.ticket(n).sla_due_at == local(15, 9)
    week.advance_to(local(14, 16, 30))  # 75% of 8 h: 3.5 h + 2.5 h
    assert [m[:3] for m in week.sla_mails()] == [("sla_reminder", n, local(14, 16, 30))]

    from maild.sla.deadline import reprioritise

    with week.db.transaction() as s:  # lowered to BASSA: due Thursday 09:00
        t = s.scalar(select(Ticket).where(Ticket.number == n))
        assert reprioritise(s, week.cfg, t, "BASSA", MARIO, local(14, 17))
        assert t.sla_due_at == local(16, 9)
    week.advance_to(local(15, 15))  # BASSA's 75% (Wednesday 14:30) is not repeated
    assert len(week.sla_mails()) == 1
    assert week.next["sla_escalation"] == local(16, 9)

    with week.db.transaction() as s:  # back to ALTA: already past due
        t = s.scalar(select(Ticket).where(Ticket.number == n))
        assert reprioritise(s, week.cfg, t, "ALTA", MARIO, local(15, 15))
        assert t.overdue
        assert not reprioritise(s, week.cfg, t, "ALTA", MARIO, local(15, 15))
    week.advance_to(local(15, 15, 1))
    # 12.5 h used of 8: 100% and 150% are both passed and both fire now, once
    assert [m[:3] for m in week.sla_mails()][1:] == [
        ("sla_overdue", n, local(15, 15, 1)),
        ("sla_escalation", n, local(15, 15, 1)),
        ("sla_escalation", n, local(15, 15, 1)),  # the referent's copy
    ]
    week.advance_to(local(16, 18))
    kinds = [m[0] for m in week.sla_mails()]
    assert kinds[4:] == ["sla_digest"]  # Thursday's digest lists it; no level again
    with week.db.session() as s:
        history = s.execute(
            select(TicketEvent.field, TicketEvent.old_value, TicketEvent.new_value)
            .where(TicketEvent.field.in_(["priority", "overdue"]))
            .order_by(TicketEvent.id)
        ).all()
    assert history == [
        ("priority", "ALTA", "BASSA"),
        ("priority", "BASSA", "ALTA"),
        ("overdue", "False", "True"),
    ]


def test_resolution_clock_pauses_while_waiting(state_dir, db_url):
    from maild.tickets import record_event

    cfg = make_config(state_dir, db_url=db_url, sla={"resolution_hours": {"MEDIA": 4}})
    w = Week(cfg, db_url, local(14, 9))
    try:
        n = w.ingest(PRO, "Stampante")
        w.run()

        def status(new: str, taken: bool = False) -> None:
            with w.db.transaction() as s:
                t = s.scalar(select(Ticket).where(Ticket.number == n))
                record_event(s, t, w.clock.now(), MARIO, "status", t.status, new)
                t.status = new
                if taken:
                    t.taken_at = w.clock.now()

        w.advance_to(local(14, 9, 30))
        status("in_carico", taken=True)
        w.advance_to(local(14, 10))
        status("in_attesa")  # 1 h used of 4
        w.advance_to(local(15, 9))
        assert w.sla_mails() == []
        status("in_carico")  # 3 h left: 75% at 11:00, due 12:00
        w.advance_to(local(15, 12, 30))
        got = [(m[0], m[2]) for m in w.sla_mails()]
        assert got == [("sla_reminder", local(15, 11)), ("sla_overdue", local(15, 12))]
        assert "risoluzione" in w.sla_mails()[0][4].decode("utf-8", "replace")
        assert w.ticket(n).overdue
    finally:
        w.db.dispose()


def test_check_reads_due_tickets_through_the_index(state_dir):
    cfg = make_config(state_dir)
    db = Database(cfg.database_url)
    db.upgrade()
    with db.session() as s:
        plan = s.execute(
            text(
                "EXPLAIN QUERY PLAN SELECT * FROM tickets WHERE sla_check_at <= :now "
                "ORDER BY sla_check_at, id LIMIT 200"
            ),
            {"now": "2026-01-01"},
        ).all()
    db.dispose()
    assert "ix_tickets_sla_check" in " ".join(str(r) for r in plan)


def test_default_jobs_include_the_sla_jobs(state_dir):
    cfg = make_config(state_dir, sla={"digest": False})
    rt = Runtime.create(cfg, clock=ManualClock(local(14, 9)))
    names = [j.name for j in default_jobs(rt)]
    assert "sla_escalation" in names and "sla_digest" not in names
    rt.db.dispose()
