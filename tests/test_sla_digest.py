"""Daily digest of overdue tickets, and the SLA templates in both languages."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from maild.clock import ManualClock
from maild.db import Database
from maild.ingest import Runtime
from maild.models import OutboxMessage, Ticket
from maild.sla.digest import DigestJob, digest_moment, next_digest_moment, send_digest
from maild.sla.models import SlaDigest

from .conftest import make_config

ROME = ZoneInfo("Europe/Rome")


def at(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=ROME)


@pytest.fixture
def rt(state_dir, db_url):
    cfg = make_config(state_dir, db_url=db_url)
    db = Database(db_url)
    db.upgrade()
    runtime = Runtime.create(cfg, db=db, clock=ManualClock(at(12, 23, 7)))
    yield runtime
    db.dispose()


def add_ticket(rt: Runtime, seq: int, overdue: bool, status: str = "nuovo") -> None:
    with rt.db.transaction() as s:
        s.add(
            Ticket(
                number=f"2026-{seq:06d}",
                year=2026,
                seq=seq,
                title=f"richiesta {seq}",
                status=status,
                ente="Comune di Vaiano Cremasco",
                requester_email="x@comune.vaiano-cremasco.cr.it",
                created_at=at(12, 21, 9),
                updated_at=at(12, 21, 9),
                sla_due_at=at(12, 22, 9),
                overdue=overdue,
            )
        )


def test_digest_moments_skip_weekends_and_holidays(state_dir):
    cfg = make_config(state_dir)
    assert digest_moment(cfg, at(12, 23, 0).date()) == at(12, 23, 8, 30)
    assert digest_moment(cfg, at(12, 25, 0).date()) is None  # Christmas
    assert digest_moment(cfg, at(12, 26, 0).date()) is None  # Santo Stefano, a Saturday
    # Wednesday 23 after the digest: next is Thursday 24, then Monday 28
    assert next_digest_moment(cfg, at(12, 23, 9)) == at(12, 24, 8, 30)
    assert next_digest_moment(cfg, at(12, 24, 9)) == at(12, 28, 8, 30)
    later = make_config(state_dir, sla={"digest_time": "09:15"})
    assert later.sla.digest_time == time(9, 15)
    assert digest_moment(later, at(12, 23, 0).date()) == at(12, 23, 9, 15)


def test_digest_once_a_day_lists_open_overdue_tickets(rt):
    add_ticket(rt, 1, overdue=True)
    add_ticket(rt, 2, overdue=False)
    add_ticket(rt, 3, overdue=True, status="chiuso")
    job = DigestJob()
    assert job.run_due(rt) == at(12, 23, 8, 30)  # 07:00: not yet
    rt.clock.set(at(12, 23, 8, 30))
    assert job.run_due(rt) == at(12, 24, 8, 30)
    assert send_digest(rt, at(12, 23, 0).date(), rt.clock.now()) is None  # another instance
    DigestJob().run_due(rt)  # after a restart, the same day
    with rt.db.session() as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "sla_digest")).all()
        days = s.scalars(select(SlaDigest)).all()
    assert len(rows) == 1 and [(d.tickets, d.day.day) for d in days] == [(1, 23)]
    assert rows[0].recipients == ["laura.bianchi@consorzio.example"]
    body = rt.notifier.wire(rows[0]).decode("utf-8", "replace")
    assert "2026-000001" in body and "2026-000002" not in body and "2026-000003" not in body


def test_no_mail_when_nothing_is_overdue(rt):
    rt.clock.set(at(12, 23, 10))
    DigestJob().run_due(rt)
    with rt.db.session() as s:
        assert s.scalars(select(OutboxMessage)).all() == []
        assert [d.tickets for d in s.scalars(select(SlaDigest))] == [0]


@pytest.mark.parametrize("language", ["it", "en"])
def test_sla_templates_render_in_both_languages(state_dir, language):
    cfg = make_config(state_dir, service={"language": language})
    rt = Runtime.create(cfg, clock=ManualClock(at(12, 23, 10)))
    ticket = Ticket(
        number="2026-000001",
        title="Stampante <rotta>",
        priority="ALTA",
        status="nuovo",
        ente="Comune di Vaiano Cremasco",
        assignee="mario.rossi@consorzio.example",
        created_at=at(12, 22, 9),
        sla_due_at=at(12, 23, 9),
        overdue=True,
    )
    context = dict(
        ticket=ticket,
        ente=cfg.ente_by_name(ticket.ente),
        target="take_charge",
        level=100,
        due_at=ticket.sla_due_at,
        hours=8.0,
        elapsed_hours=9.5,
        now=at(12, 23, 10),
        open_tickets=[ticket],
    )
    words = {"it": ("SCADUT", "presa in carico"), "en": ("OVERDUE", "take-charge")}[language]
    for name in ("sla_reminder", "sla_overdue", "sla_escalation"):
        for referent in (False, True):
            subject, text, html = rt.notifier.render(name, for_referent=referent, **context)
            assert subject and "2026-000001" in text and "2026-000001" in html
            assert "Stampante &lt;rotta&gt;" in html  # escaped in HTML only
            assert words[1] in subject + text
    subject, text, _ = rt.notifier.render("sla_overdue", for_referent=False, **context)
    assert words[0] in subject and "23/12/2026 09:00" in text
    subject, text, html = rt.notifier.render(
        "sla_digest", tickets=[ticket], day=at(12, 23, 0).date(), now=at(12, 23, 8, 30)
    )
    assert "23/12/2026" in subject and "2026-000001" in text and "<table" in html
    rt.db.dispose()
