"""Every sample of ../shared/samples/italian-mail through `Ingestor.ingest` (the daemon's
path), checked against its expected.json entry, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from maild.clock import ManualClock
from maild.db import Database
from maild.ingest import InboundItem, Ingestor, IngestResult, Runtime
from maild.models import (
    Article,
    Base,
    InboundMessage,
    OutboxMessage,
    Ticket,
    TicketCounter,
    TicketEvent,
)
from maild.parse import parse_message
from maild.subject import title_of
from maild.tickets import create_ticket, remember_message_id

from .conftest import DB_PARAMS, SHARED, make_config, pg_schema_url

SAMPLES = SHARED / "samples" / "italian-mail"
EXPECTED: dict[str, dict] = json.loads((SAMPLES / "expected.json").read_text("utf-8"))
T0 = datetime(2026, 3, 27, 9, 0, tzinfo=UTC)  # after every sample's date, a Friday


def names(pred) -> list[str]:
    return sorted(n for n, e in EXPECTED.items() if pred(e))


NEW = names(lambda e: not e["is_auto"] and e["kind"] in ("new", "forward"))
REPLIES = names(lambda e: not e["is_auto"] and e["kind"] == "reply")
AUTO = names(lambda e: e["is_auto"])
BOUNCES = names(lambda e: e["kind"] == "bounce")
OOF = names(lambda e: e["kind"] == "auto-reply")


# -- helpers shared with the PEC tests -------------------------------------------------------


@pytest.fixture(scope="module", params=DB_PARAMS)
def shared_db(request, tmp_path_factory) -> Iterator[Database]:
    """One migrated database per module and backend, emptied before each test: migrating a
    fresh one for each of these many small tests would cost most of their time."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path_factory.mktemp('db') / 'maild.db'}")
        db.upgrade()
        yield db
        db.dispose()
        return
    with pg_schema_url() as url:
        db = Database(url)
        try:
            db.upgrade()
            yield db
        finally:
            db.dispose()


def runtime(db: Database, state_dir: Path) -> Runtime:
    with db.transaction() as s:
        for table in reversed(Base.metadata.sorted_tables):
            s.execute(table.delete())
    cfg = make_config(state_dir, db_url=db.url)
    return Runtime.create(cfg, db=db, clock=ManualClock(T0))


@pytest.fixture
def rt(shared_db, state_dir):
    return runtime(shared_db, state_dir)


def ingest(rt: Runtime, raw: bytes) -> IngestResult:
    return Ingestor(rt).ingest(InboundItem(raw, "supporto"))


def open_ticket(
    rt: Runtime,
    number: str,
    requester: str,
    *,
    title: str = "Richiesta",
    message_ids: tuple[str, ...] = (),
    status: str = "in_attesa",
) -> None:
    """A ticket with exactly this number (numbering forged through the counter, then the
    daemon's own create_ticket), knowing the Message-IDs of the mails maild sent on it."""
    year, seq = (int(x) for x in re.fullmatch(r"(\d{4})-(\d+)", number).groups())
    with rt.db.transaction() as s:
        counter = s.get(TicketCounter, year)
        if counter is None:
            s.add(TicketCounter(year=year, last_seq=seq - 1))
        else:
            counter.last_seq = seq - 1
        s.flush()
        ticket = create_ticket(
            s,
            number_format=rt.cfg.service.number_format,
            now=T0,
            local_year=year,
            title=title,
            requester_email=requester,
        )
        assert ticket.number == number
        ticket.status = status
        for mid in message_ids:
            remember_message_id(s, mid, ticket.id)


def tickets(rt: Runtime) -> list[Ticket]:
    with rt.db.session() as s:
        return list(s.scalars(select(Ticket).order_by(Ticket.id)))


def ticket(rt: Runtime, number: str) -> Ticket:
    with rt.db.session() as s:
        return s.scalar(select(Ticket).where(Ticket.number == number))


def articles(rt: Runtime, number: str) -> list[Article]:
    with rt.db.session() as s:
        t = s.scalar(select(Ticket).where(Ticket.number == number))
        q = select(Article).where(Article.ticket_id == t.id).order_by(Article.id)
        return list(s.scalars(q.options(selectinload(Article.attachments))))


def events(rt: Runtime, number: str, field: str) -> list[TicketEvent]:
    with rt.db.session() as s:
        t = s.scalar(select(Ticket).where(Ticket.number == number))
        q = select(TicketEvent).where(TicketEvent.ticket_id == t.id, TicketEvent.field == field)
        return list(s.scalars(q.order_by(TicketEvent.id)))


def outbox(rt: Runtime, kind: str | None = None) -> list[OutboxMessage]:
    with rt.db.session() as s:
        q = select(OutboxMessage).order_by(OutboxMessage.id)
        if kind is not None:
            q = q.where(OutboxMessage.kind == kind)
        return list(s.scalars(q))


def raw(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def tag_number(tag: str | None) -> str | None:
    m = re.search(r"#(\d{4}-\d+)", tag or "")
    return m.group(1) if m else None


def referenced_number(e: dict) -> str:
    """The ticket a reply, auto-reply or bounce concerns: its tag, else the number inside our
    Message-ID (maild.YYYY-NNNNNN.kind@...) that was answered or bounced."""
    number = tag_number(e.get("refers_to_tag")) or tag_number(e.get("returned_subject"))
    if number is None:
        m = re.search(r"maild\.(\d{4}-\d+)\.", e.get("refers_to_message_id") or "")
        number = m.group(1) if m else None
    assert number, e
    return number


def our_message_ids(e: dict) -> tuple[str, ...]:
    ids = (e.get("refers_to_message_id"), e.get("bounced_message_id"))
    return tuple(dict.fromkeys(i for i in ids if i))


# -- the index itself ------------------------------------------------------------------------


def test_every_sample_has_an_expectation():
    assert sorted(p.name for p in SAMPLES.glob("*.eml")) == sorted(EXPECTED)
    assert len(NEW) + len(REPLIES) + len(AUTO) == len(EXPECTED)


# -- new requests and forwards ---------------------------------------------------------------


@pytest.mark.parametrize("name", NEW)
def test_new_request_gets_its_title_and_an_acknowledgement(rt, name):
    e = EXPECTED[name]
    res = ingest(rt, raw(name))
    assert res.outcome == "new_ticket", res
    [t] = tickets(rt)
    assert t.title == e["title"]
    assert t.requester_email == e["sender"].lower()  # From, not Sender (a30)
    [art] = articles(rt, t.number)
    assert e["new_text_must_contain"] in art.body_text
    stored = {a.filename for a in art.attachments}
    assert set(e["attachments"]) <= stored
    [ack] = outbox(rt, "ack")
    assert ack.recipients == [e["sender"].lower()]


# -- replies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REPLIES)
def test_reply_joins_its_ticket_with_only_the_new_text(rt, name):
    e = EXPECTED[name]
    number = referenced_number(e)
    # headers thread only when the sample has them: "tag" samples must be found by tag
    ids = our_message_ids(e) if e["threading"] != "tag" else ()
    open_ticket(rt, number, e["sender"].lower(), title=e["title"], message_ids=ids)
    res = ingest(rt, raw(name))
    assert res.ticket_number == number, res
    assert len(tickets(rt)) == 1
    assert outbox(rt, "ack") == []
    if e["author_role"] == "requester":
        assert res.outcome == "follow_up"
    art = articles(rt, number)[-1]
    assert title_of(art.subject) == e["title"]
    assert e["new_text_must_contain"] in art.body_text
    assert e["new_text_must_not_contain"] not in art.body_text
    for fragment in e.get("new_text_fragments", []):
        assert fragment in art.body_text
    # the full original stays with the article
    assert rt.blobs.get(art.raw_sha256) == raw(name)
    assert ticket(rt, number).title == e["title"]


def test_reply_without_tag_or_known_headers_is_a_new_ticket(rt):
    """The counter-proof of the tag tests: no ticket 2026-000123 here, so no follow-up."""
    res = ingest(rt, raw("a03-outlook2016-reply-threading-stripped.eml"))
    assert res.outcome == "new_ticket"
    assert tickets(rt)[0].title == "Stampante di rete Anagrafe non stampa"


# -- machines --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", AUTO)
def test_automatic_mail_without_ticket_opens_nothing_and_gets_no_answer(rt, name):
    res = ingest(rt, raw(name))
    assert res.outcome in ("auto_reply", "bounce_unmatched"), res
    assert tickets(rt) == []
    assert [o.kind for o in outbox(rt) if o.kind in ("ack", "too_large")] == []
    assert all(
        rcpt != EXPECTED[name]["sender"].lower() for o in outbox(rt) for rcpt in o.recipients
    )


@pytest.mark.parametrize("name", AUTO)
def test_automatic_mail_is_kept_on_its_ticket_without_answer(rt, name):
    e = EXPECTED[name]
    number = referenced_number(e)
    ids = our_message_ids(e) if e["threading"] != "tag" else ()
    open_ticket(rt, number, "richiedente@comune.crema.cr.it", message_ids=ids)
    res = ingest(rt, raw(name))
    assert res.ticket_number == number, res
    assert len(tickets(rt)) == 1
    assert outbox(rt, "ack") == []
    assert ticket(rt, number).status == "in_attesa"
    [art] = articles(rt, number)
    assert art.internal and rt.blobs.get(art.raw_sha256) == raw(name)
    if e["kind"] == "bounce":
        assert res.outcome == "bounce"
        [ev] = events(rt, number, "bounce")
        assert e["failed_recipient"].lower() in ev.new_value
        # the operator reads first who did not get our mail
        assert art.body_text.startswith("[Mancato recapito] ")
        assert e["failed_recipient"].lower() in art.body_text.splitlines()[0].lower()
        returned = [a for a in art.attachments if a.content_type == "message/rfc822"]
        assert [a.filename for a in returned] == e["attachments"]
    else:
        assert res.outcome == "auto_reply"


def test_bounce_found_by_tag_alone(rt):
    name = "a20-exchange2016-ndr-italian.eml"
    open_ticket(rt, "2026-000127", "richiedente@comune.crema.cr.it")  # no Message-ID known
    res = ingest(rt, raw(name))
    assert (res.outcome, res.ticket_number) == ("bounce", "2026-000127")
    [ev] = events(rt, "2026-000127", "bounce")
    assert "simona.vila@comune.crema.cr.it" in ev.new_value


@pytest.mark.parametrize("status", ["nuovo", "in_carico", "risolto"])
def test_out_of_office_never_changes_status(rt, status):
    """(in_attesa is covered for every auto-reply above.) The Exchange OOF without
    Auto-Submitted: only its Exchange headers and subject say it is a machine."""
    name = "a19-exchange2016-oof-no-auto-submitted.eml"
    e = EXPECTED[name]
    number = referenced_number(e)
    open_ticket(rt, number, e["sender"].lower(), status=status)
    res = ingest(rt, raw(name))
    assert (res.outcome, res.ticket_number) == ("auto_reply", number)
    t = ticket(rt, number)
    assert t.status == status and t.resolved_at is None and t.closed_at is None
    assert outbox(rt, "ack") == []


# -- attachments -----------------------------------------------------------------------------


def test_tnef_files_are_stored_as_attachments(rt):
    name = "a17-outlook2013-tnef-winmail.eml"
    res = ingest(rt, raw(name))
    [art] = articles(rt, res.ticket_number)
    by_name = {a.filename: a for a in art.attachments}
    for inner in EXPECTED[name]["tnef_contains"]:
        assert inner in by_name
        assert rt.blobs.get(by_name[inner].sha256).startswith(b"%PDF")
    assert "winmail.dat" in by_name  # the container too, as sent


def test_inline_images_are_kept_and_linked(rt):
    name = "a05-exchange2016-new-inline-screenshot.eml"
    res = ingest(rt, raw(name))
    [art] = articles(rt, res.ticket_number)
    images = {a.filename: a for a in art.attachments if a.content_type.startswith("image/")}
    assert sorted(images) == ["image001.png", "image002.png"]
    for a in images.values():
        assert a.inline and a.content_id
        assert f"cid:{a.content_id}" in art.body_html
        assert rt.blobs.get(a.sha256).startswith(b"\x89PNG")


def test_forwarded_message_keeps_its_sender_subject_and_text(rt):
    name = "a07-exchange2016-forward-as-attachment.eml"
    e = EXPECTED[name]
    res = ingest(rt, raw(name))
    [art] = articles(rt, res.ticket_number)
    [fwd] = [a for a in art.attachments if a.content_type == "message/rfc822"]
    assert fwd.filename == e["attachments"][0]
    inner = parse_message(rt.blobs.get(fwd.sha256))
    assert inner.subject == e["title"]
    assert inner.sender.email != e["sender"]
    assert e["new_text_must_not_contain"] in inner.text  # the vendor's words, in the vendor's mail
    assert e["new_text_must_not_contain"] not in art.body_text


def test_every_sample_is_recorded_exactly_once(rt):
    """All samples in one database, twice: the second pass changes nothing."""
    for name in sorted(EXPECTED):
        assert not ingest(rt, raw(name)).duplicate
    with rt.db.session() as s:
        recorded = len(s.scalars(select(InboundMessage)).all())
    before = (len(tickets(rt)), len(outbox(rt)))
    assert all(ingest(rt, raw(name)).duplicate for name in sorted(EXPECTED))
    assert recorded == len(EXPECTED)
    assert (len(tickets(rt)), len(outbox(rt))) == before
    acked = {r for o in outbox(rt, "ack") for r in o.recipients}
    for name in AUTO:
        assert EXPECTED[name]["sender"].lower() not in acked
