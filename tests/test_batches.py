"""Runs of messages in one transaction (maild.batch, Ingestor.ingest_batch): the same
outcome as one by one, on SQLite and PostgreSQL, and the schema the migrations build is
the one the models describe."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from maild import facts
from maild.classify import default_rules
from maild.ingest import InboundItem, Ingestor, Runtime
from maild.message import ParsedMessage
from maild.models import Article, Base, InboundMessage, OutboxMessage, Ticket
from maild.prepare import prepare

from .mails import make_mail


def items(*raws: bytes) -> list[InboundItem]:
    return [InboundItem(raw, "supporto", 1, uid) for uid, raw in enumerate(raws, 1)]


def count(rt: Runtime, model) -> int:
    with rt.db.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_a_reply_joins_a_ticket_opened_earlier_in_the_same_run(rt):
    new = make_mail(subject="Rete lenta", message_id="<run-new@comune.example>")
    reply = make_mail(
        subject="R: Rete lenta",
        body="Anche oggi.\n\n> testo citato\n",
        message_id="<run-reply@comune.example>",
        in_reply_to="<run-new@comune.example>",
    )
    results = Ingestor(rt).ingest_batch(items(new, reply))
    assert [r.outcome for r in results] == ["new_ticket", "follow_up"]
    assert results[0].ticket_number == results[1].ticket_number
    with rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 1
        bodies = s.scalars(select(Article.body_text).order_by(Article.id)).all()
    assert len(bodies) == 2 and "testo citato" not in bodies[1]


def test_a_poison_message_costs_its_run_a_retry_not_its_neighbours(rt):
    def poison(ctx, msg):
        if "veleno" in msg.subject:
            raise RuntimeError("boom")
        return None

    raws = [make_mail(subject=s) for s in ("uno", "due veleno", "tre")]
    results = Ingestor(rt, rules=[poison, *default_rules()]).ingest_batch(items(*raws))
    assert [r.outcome for r in results] == ["new_ticket", "quarantine", "new_ticket"]
    assert "boom" in results[1].detail
    with rt.db.session() as s:
        numbers = s.scalars(select(Ticket.number).order_by(Ticket.seq)).all()
        alerts = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "alert")).all()
    assert numbers == ["2026-000001", "2026-000002"]  # no number lost to the failed run
    assert len(alerts) == 1
    assert count(rt, InboundMessage) == 3


def test_a_run_given_again_is_recognised_not_stored_twice(rt):
    batch = items(make_mail(subject="a"), make_mail(subject="b"))
    first = Ingestor(rt).ingest_batch(batch)
    again = Ingestor(rt).ingest_batch(batch)
    assert [r.outcome for r in first] == ["new_ticket", "new_ticket"]
    assert all(r.duplicate and r.outcome == "new_ticket" for r in again)
    assert count(rt, Ticket) == 2 and count(rt, OutboxMessage) == 4


def test_facts_survive_lightening_and_an_unread_one_says_so(rt):
    auto = make_mail(
        subject="Risposta automatica: fuori ufficio", headers={"Auto-Submitted": "auto-replied"}
    )
    p = prepare(InboundItem(auto, "supporto"), rt.cfg, rt.blobs)
    msg: ParsedMessage = p.msg
    assert msg.email is None  # lightened
    assert facts.auto_kind(msg) is not None  # read before, kept in the memo
    assert facts.requested_priority(msg, rt.cfg) is None
    del msg.memo["pec"]
    with pytest.raises(RuntimeError, match="before the message was lightened"):
        facts.pec_info(msg)


def test_migrations_build_the_schema_the_models_describe(rt):
    with rt.db.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
    assert diff == []


def test_a_stored_blob_is_never_replaced_and_no_temporary_file_is_left(state_dir):
    from maild.blobs import BlobStore

    first = BlobStore(state_dir / "blobs")
    digest = first.put(b"allegato")
    path = first.path(digest)
    inode = path.stat().st_ino
    assert BlobStore(state_dir / "blobs").put(b"allegato") == digest  # another process
    assert path.stat().st_ino == inode and path.read_bytes() == b"allegato"
    assert [p.name for p in path.parent.iterdir()] == [digest]
