"""Ingestion through the same path the daemon uses, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from maild.classify import default_rules
from maild.clock import ManualClock
from maild.db import Database
from maild.ingest import InboundItem, Ingestor, Runtime, dedupe_key
from maild.models import Article, InboundMessage, OutboxMessage, Ticket

from .conftest import T0, make_config
from .mails import make_mail


def ingest(rt: Runtime, raw: bytes, uid: int | None = None, **kw):
    return Ingestor(rt, **kw).ingest(InboundItem(raw, "supporto", 1 if uid else None, uid))


def outbox(rt: Runtime, kind: str | None = None):
    with rt.db.session() as s:
        q = select(OutboxMessage).order_by(OutboxMessage.id)
        if kind:
            q = q.where(OutboxMessage.kind == kind)
        rows = list(s.scalars(q))
    return [(r, message_from_bytes(rt.notifier.wire(r), policy=default_policy)) for r in rows]


def tickets(rt: Runtime) -> list[Ticket]:
    with rt.db.session() as s:
        return list(s.scalars(select(Ticket).order_by(Ticket.id)))


def articles(rt: Runtime, number: str) -> list[Article]:
    with rt.db.session() as s:
        t = s.scalar(select(Ticket).where(Ticket.number == number))
        q = select(Article).where(Article.ticket_id == t.id).order_by(Article.id)
        return list(s.scalars(q.options(selectinload(Article.attachments))))


def test_new_message_becomes_numbered_ticket_with_ack_and_operator_copy(rt):
    raw = make_mail(message_id="<req1@comune.example>", subject="R: Stampante non stampa")
    res = ingest(rt, raw)
    assert res.outcome == "new_ticket" and res.ticket_number == "2026-000001"
    [t] = tickets(rt)
    assert t.title == "Stampante non stampa"  # reply prefix stripped from the title
    assert t.status == "nuovo" and t.priority == "MEDIA"
    assert t.ente == "Comune di Vaiano Cremasco"
    assert t.requester_email == "m.rossi@comune.vaiano-cremasco.cr.it"

    [(ack_row, ack)] = outbox(rt, "ack")
    assert ack_row.recipients == ["m.rossi@comune.vaiano-cremasco.cr.it"]
    assert ack["Subject"].startswith("[Ticket#2026-000001] ")
    assert ack["In-Reply-To"] == "<req1@comune.example>"
    assert "<req1@comune.example>" in ack["References"]
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["Reply-To"] == "supporto@consorzio.example"
    text = ack.get_body(("plain",)).get_content()
    assert "2026-000001" in text and "MEDIA" in text and "12 ore lavorative" in text
    assert ack.get_body(("html",)) is not None

    [(copy_row, copy)] = outbox(rt, "operator_copy")
    assert copy_row.recipients == ["operatori@consorzio.example"]
    assert "[Ticket#2026-000001]" in copy["Subject"]
    assert "non stampa più" in copy.get_body(("plain",)).get_content()
    assert copy["Reply-To"] == "supporto@consorzio.example"


def test_numbers_are_progressive(rt):
    numbers = [ingest(rt, make_mail(subject=f"richiesta {i}")).ticket_number for i in range(3)]
    assert numbers == ["2026-000001", "2026-000002", "2026-000003"]


def test_same_message_twice_is_stored_once(rt):
    raw = make_mail(message_id="<dup@comune.example>")
    first = ingest(rt, raw, uid=1)
    # delivered again by another route: trace headers added in front, same content
    again = b"Received: from mx by consorzio\r\nDelivered-To: supporto\r\n" + raw
    second = ingest(rt, again)
    third = ingest(rt, raw, uid=1)
    assert first.outcome == "new_ticket" and not first.duplicate
    assert second.duplicate and third.duplicate
    assert len(tickets(rt)) == 1
    assert len(outbox(rt, "ack")) == 1


def test_dedupe_key_depends_on_message_id_and_body():
    a = make_mail(message_id="<a@x>", body="uno\n")
    assert dedupe_key(a) == dedupe_key(b"X-Trace: 1\r\n" + a)
    assert dedupe_key(a) != dedupe_key(make_mail(message_id="<a@x>", body="due\n"))
    assert dedupe_key(a) != dedupe_key(make_mail(message_id="<b@x>", body="uno\n"))


def test_reply_joins_ticket_by_references_and_strips_quote(rt):
    ingest(rt, make_mail(message_id="<orig@comune.example>"))
    [(_, ack)] = outbox(rt, "ack")
    reply = make_mail(
        subject="R: Richiesta registrata",  # no tag: headers alone must thread it
        body="Ho riavviato il PC ma non va ancora.\n\n"
        "-----Messaggio originale-----\nDa: Supporto\nInviato: martedì\n"
        "Oggetto: richiesta\n\nla sua richiesta è stata registrata\n",
        in_reply_to=ack["Message-ID"],
        references=f"<orig@comune.example> {ack['Message-ID']}",
    )
    res = ingest(rt, reply)
    assert res.outcome == "follow_up" and res.ticket_number == "2026-000001"
    arts = articles(rt, "2026-000001")
    assert len(arts) == 2
    assert "non va ancora" in arts[1].body_text
    assert "registrata" not in arts[1].body_text
    assert len(tickets(rt)) == 1
    assert len(outbox(rt, "ack")) == 1  # follow-ups are not acknowledged again
    [(row, _)] = outbox(rt, "follow_up_copy")
    assert row.recipients == ["operatori@consorzio.example"]


def test_reply_joins_ticket_by_subject_tag(rt):
    ingest(rt, make_mail())
    res = ingest(rt, make_mail(subject="RE: R: [Ticket#2026-000001] Stampante non stampa"))
    assert res.outcome == "follow_up" and res.ticket_number == "2026-000001"


def test_unknown_tag_opens_new_ticket(rt):
    res = ingest(rt, make_mail(subject="R: [Ticket#2026-009999] Stampante"))
    assert res.outcome == "new_ticket"


def test_garbage_goes_to_quarantine_with_alert(rt):
    res = ingest(rt, b"\x00\x01\x02 not a mail at all \xff" * 10)
    assert res.outcome == "quarantine" and res.folder == "quarantine"
    [(row, alert)] = outbox(rt, "alert")
    assert row.recipients == ["operatori@consorzio.example"]
    assert tickets(rt) == []
    # processing it again (crash before the move) neither alerts twice nor fails
    again = ingest(rt, b"\x00\x01\x02 not a mail at all \xff" * 10)
    assert again.duplicate and again.folder == "quarantine"
    assert len(outbox(rt, "alert")) == 1


def test_handler_error_quarantines_instead_of_blocking(rt):
    def broken(ctx, msg):
        raise RuntimeError("boom")

    res = ingest(rt, make_mail(), rules=[broken, *default_rules()])
    assert res.outcome == "quarantine" and "boom" in res.detail
    assert tickets(rt) == []
    assert len(outbox(rt, "alert")) == 1
    # the next message is processed normally
    assert ingest(rt, make_mail(subject="altro")).outcome == "new_ticket"


def test_too_large_message_is_refused_politely(state_dir, db_url):
    cfg = make_config(state_dir, db_url=db_url, service={"max_message_bytes": 2000})
    db = Database(cfg.database_url)
    db.upgrade()
    rt = Runtime.create(cfg, db=db, clock=ManualClock(T0))
    big = make_mail(attachments=[("foto.jpg", "image/jpeg", b"x" * 5000)])
    res = ingest(rt, big)
    assert res.outcome == "too_large" and res.folder == "quarantine"
    [(row, reply)] = outbox(rt, "too_large")
    assert row.recipients == ["m.rossi@comune.vaiano-cremasco.cr.it"]
    assert "MB" in reply.get_body(("plain",)).get_content()
    assert len(outbox(rt, "alert")) == 1
    assert tickets(rt) == []
    db.dispose()


def test_own_address_is_a_loop(rt):
    res = ingest(rt, make_mail(sender="supporto@consorzio.example"))
    assert res.outcome == "loop"
    assert tickets(rt) == [] and outbox(rt) == []


def test_auto_reply_gets_no_ack_and_no_ticket(rt):
    ingest(rt, make_mail())
    oof = make_mail(
        subject="Risposta automatica: [Ticket#2026-000001] Stampante non stampa",
        body="Sono fuori ufficio fino al 20 marzo.\n",
        headers={"Auto-Submitted": "auto-replied"},
    )
    res = ingest(rt, oof)
    assert res.outcome == "auto_reply"
    assert len(tickets(rt)) == 1
    assert len(outbox(rt, "ack")) == 1
    t = tickets(rt)[0]
    assert t.status == "nuovo"


def test_bulk_mail_becomes_ticket_without_ack(rt):
    res = ingest(rt, make_mail(headers={"Precedence": "bulk", "List-Id": "<news.example>"}))
    assert res.outcome == "new_ticket"
    assert outbox(rt, "ack") == []
    assert len(outbox(rt, "operator_copy")) == 1


def test_ack_rate_limit_per_sender(rt):
    for i in range(12):
        ingest(rt, make_mail(subject=f"richiesta {i}"))
    assert len(tickets(rt)) == 12
    assert len(outbox(rt, "ack")) == 10  # default: 10 per hour
    rt.clock.advance(timedelta(hours=1, minutes=1))
    ingest(rt, make_mail(subject="dopo un'ora"))
    assert len(outbox(rt, "ack")) == 11


def test_unknown_sender_accepted_without_ente(rt):
    res = ingest(rt, make_mail(sender="mario@gmail.example"))
    assert res.outcome == "new_ticket"
    assert tickets(rt)[0].ente is None


def test_unknown_sender_rejected_when_configured(state_dir, db_url):
    cfg = make_config(state_dir, db_url=db_url, service={"unknown_senders": "reject"})
    db = Database(cfg.database_url)
    db.upgrade()
    rt = Runtime.create(cfg, db=db, clock=ManualClock(T0))
    res = ingest(rt, make_mail(sender="mario@gmail.example"))
    assert res.outcome == "rejected_unknown_sender"
    assert tickets(rt) == []
    [(row, reply)] = outbox(rt, "ack")
    assert row.recipients == ["mario@gmail.example"]
    assert "enti" in reply.get_body(("plain",)).get_content()
    db.dispose()


def test_attachments_stored_content_addressed(rt):
    pdf = b"%PDF-1.4 fake"
    ingest(rt, make_mail(attachments=[("../../etc/passwd report.pdf", "application/pdf", pdf)]))
    [art] = articles(rt, "2026-000001")
    [att] = art.attachments
    assert "/" not in att.filename and att.filename.endswith(".pdf")
    assert att.size == len(pdf)
    assert rt.blobs.get(att.sha256) == pdf
    assert rt.blobs.get(art.raw_sha256).startswith(b"From:") or b"Message-ID" in rt.blobs.get(
        art.raw_sha256
    )


@pytest.mark.parametrize("runs", [False, True], ids=["one-by-one", "runs"])
def test_concurrent_ingestion_gives_gap_free_numbers(rt, runs):
    raws = [  # one sender each: acknowledgements are rate-limited per sender
        make_mail(sender=f"utente{i}@comune.vaiano-cremasco.cr.it", subject=f"concorrente {i}")
        for i in range(16)
    ]
    errors: list[BaseException] = []

    def work(chunk):
        try:
            if runs:  # a run of messages in one transaction (maild.batch)
                Ingestor(rt).ingest_batch([InboundItem(raw, "supporto") for raw in chunk])
            for raw in [] if runs else chunk:
                Ingestor(rt).ingest(InboundItem(raw, "supporto"))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(raws[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    seqs = sorted(t.seq for t in tickets(rt))
    assert seqs == list(range(1, 17))
    with rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(InboundMessage)) == 16
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 32  # ack + copy


def test_hostile_header_lengths_are_cut_not_refused(rt):
    """PostgreSQL enforces column lengths: a 2,000-character Message-ID or display name
    must not send an ordinary request to quarantine."""
    raw = make_mail(
        name="N" * 600,
        message_id="<" + "x" * 2000 + "@comune.example>",
        attachments=[("a" * 400 + ".pdf", "application/pdf", b"%PDF")],
    )
    res = ingest(rt, raw)
    assert res.outcome == "new_ticket", res.detail
    [art] = articles(rt, "2026-000001")
    assert art.attachments[0].filename.endswith(".pdf")


def test_bulk_mail_from_a_stranger_does_not_join_a_ticket(rt):
    ingest(rt, make_mail())
    res = ingest(
        rt,
        make_mail(
            sender="newsletter@fornitore.example",
            subject="[Ticket#2026-000001] offerta",
            headers={"Precedence": "bulk"},
        ),
    )
    assert res.outcome == "new_ticket" and res.ticket_number == "2026-000002"
    assert outbox(rt, "ack")[0][0].recipients == ["m.rossi@comune.vaiano-cremasco.cr.it"]
    assert len(outbox(rt, "ack")) == 1
