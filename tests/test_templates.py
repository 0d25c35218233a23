"""Outgoing mail in Italian (default) and English, text and HTML, HTML escaped."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default as default_policy

from sqlalchemy import select

from maild.clock import ManualClock
from maild.db import Database
from maild.ingest import InboundItem, Ingestor, Runtime
from maild.models import OutboxMessage

from .conftest import make_config
from .mails import make_mail


def ack_for(state_dir, language: str, subject: str):
    cfg = make_config(state_dir, service={"language": language})
    db = Database(cfg.database_url)
    db.upgrade()
    rt = Runtime.create(cfg, db=db, clock=ManualClock(datetime(2026, 3, 10, 9, tzinfo=UTC)))
    Ingestor(rt).ingest(InboundItem(make_mail(subject=subject), "test"))
    with db.session() as s:
        row = s.scalar(select(OutboxMessage).where(OutboxMessage.kind == "ack"))
    db.dispose()
    return message_from_bytes(rt.notifier.wire(row), policy=default_policy)


def test_italian_ack(state_dir):
    ack = ack_for(state_dir, "it", "Stampante <b>ferma</b>")
    text = ack.get_body(("plain",)).get_content()
    html = ack.get_body(("html",)).get_content()
    assert "registrata con il numero 2026-000001" in text
    assert "ore lavorative" in text
    assert "&lt;b&gt;ferma&lt;/b&gt;" in html and "<b>ferma</b>" not in html  # autoescaped
    assert ack["Subject"] == "[Ticket#2026-000001] Richiesta registrata: Stampante <b>ferma</b>"


def test_english_ack(state_dir):
    ack = ack_for(state_dir, "en", "Printer down")
    text = ack.get_body(("plain",)).get_content()
    assert "registered as number 2026-000001" in text
    assert "working hours" in text
    assert ack["Subject"].startswith("[Ticket#2026-000001] Request received")
