"""The outbox sender: requesters' mail first, held copies, the SQLite journal of accepted
mail, drafts composed at send time, failures kept and retried. On SQLite and PostgreSQL.

The transport here is a real implementation of maild.outbox.Transport that keeps what it
is given (the SMTP path itself is covered end to end against aiosmtpd)."""

from __future__ import annotations

import shutil
from datetime import UTC, date, timedelta
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
from sqlalchemy import select, update

from maild import draft as drafts
from maild.clock import ManualClock
from maild.db import Database
from maild.ingest import InboundItem, Ingestor, Runtime
from maild.models import OutboxMessage, Ticket
from maild.outbox import OutboxSender, release_leases

from .conftest import ROOT, T0, make_config
from .mails import make_mail


class Kept:
    """A transport that keeps every mail; `fail` temporary failures come first."""

    parallel = 1

    def __init__(self, fail: int = 0) -> None:
        self.mails: list[tuple[str, list[str], bytes]] = []
        self.fail = fail

    async def send(self, envelope_from: str, recipients: list[str], data: bytes) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("relay unreachable")
        self.mails.append((envelope_from, recipients, data))

    async def close(self) -> None:
        pass

    def kinds(self) -> list[str]:
        return [
            message_from_bytes(d, policy=default_policy)["X-Maild-Kind"] for _, _, d in self.mails
        ]


class Ticks:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def new_ticket(rt: Runtime, n: int) -> None:
    raw = make_mail(sender=f"utente{n}@comune.vaiano-cremasco.cr.it", subject=f"Richiesta {n}")
    Ingestor(rt).ingest(InboundItem(raw, "supporto", 1, n))


def sender_for(rt: Runtime, transport: Kept, ticks: Ticks | None = None, **kw) -> OutboxSender:
    return OutboxSender(
        rt.db, transport, rt.clock, rt.cfg.smtp, rt.notifier, monotonic=ticks or Ticks(), **kw
    )


def statuses(rt: Runtime) -> dict[str, list[str]]:
    with rt.db.session() as s:
        rows = s.execute(select(OutboxMessage.kind, OutboxMessage.status)).all()
    out: dict[str, list[str]] = {}
    for kind, status in rows:
        out.setdefault(kind, []).append(status)
    return out


async def test_acknowledgements_first_then_held_copies_after_the_pause(rt):
    for n in (1, 2, 3):
        new_ticket(rt, n)
    kept, ticks = Kept(), Ticks()
    sender = sender_for(rt, kept, ticks, hold=0.5)
    assert await sender.send_due() == 3
    assert kept.kinds() == ["ack"] * 3
    assert await sender.send_due() == 0  # copies yield while acknowledgements may follow
    ticks.t += 0.6  # none came for longer than the hold
    assert await sender.send_due() == 3
    assert kept.kinds() == ["ack"] * 3 + ["operator_copy"] * 3


async def test_a_copy_held_longer_than_max_hold_goes_even_while_acks_keep_coming(rt):
    kept, ticks = Kept(), Ticks()
    sender = sender_for(rt, kept, ticks, hold=0.5, max_hold=timedelta(seconds=30))
    new_ticket(rt, 1)
    assert await sender.send_due() == 1  # ack 1
    rt.clock.advance(seconds=31)
    new_ticket(rt, 2)
    assert await sender.send_due() == 1  # ack 2: still urgent first
    assert await sender.send_due() == 1  # copy 1, waiting 31 s; copy 2 still held
    msgs = [message_from_bytes(d, policy=default_policy) for _, _, d in kept.mails]
    assert [(m["X-Maild-Kind"], m["X-Maild-Ticket"]) for m in msgs] == [
        ("ack", "2026-000001"),
        ("ack", "2026-000002"),
        ("operator_copy", "2026-000001"),
    ]


async def test_accepted_mail_is_not_sent_again_after_a_kill(rt):
    new_ticket(rt, 1)
    first, kept = sender_for(rt, Kept(), hold=0), Kept()
    assert await first.send_due() + await first.send_due() == 2  # the ack, then the copy
    if first.journal is not None:  # SQLite: accepted, noted in the journal only
        assert set(statuses(rt)["ack"]) == {"pending"}
        first.journal.close()  # killed: nothing folded
    else:  # PostgreSQL: each mail marked sent in the table as it is accepted
        assert statuses(rt) == {"ack": ["sent"], "operator_copy": ["sent"]}
    second = sender_for(rt, kept, hold=0)  # the next daemon's sender
    assert await second.send_due() == 0 and kept.mails == []
    if second.journal is not None:
        assert second.unfolded == {1, 2}
        assert sorted(second.fold()) == [1, 2]
        assert second.journal.notes() == {}
    assert statuses(rt) == {"ack": ["sent"], "operator_copy": ["sent"]}


async def test_a_restarted_instance_frees_its_own_leases_not_another_instances(rt):
    new_ticket(rt, 1)
    new_ticket(rt, 2)
    a, b = "host-a:/var/lib/maild", "host-b:/var/lib/maild"
    [their_ack] = sender_for(rt, Kept(), hold=0, owner=b, batch=1).claim()  # alive
    [our_ack] = sender_for(rt, Kept(), hold=0, owner=a, batch=1).claim()  # then killed
    if rt.db.sqlite_path is None:  # PostgreSQL: each lease names its instance
        assert their_ack.id != our_ack.id
        third = sender_for(rt, Kept(), hold=0, owner="host-c:/srv/maild").claim()
        assert {m.kind for m in third} == {"operator_copy"}  # both acks are leased
        release_leases(rt.db, rt.clock, a)  # we start again
        restarted = sender_for(rt, Kept(), hold=0, owner=a)
        assert [m.id for m in restarted.claim()] == [our_ack.id]  # ours at once, not theirs
        rt.clock.advance(minutes=3)  # the others' leases run out (as if they died too)
    else:  # SQLite: a single instance, claims take no lease; a start frees any left
        release_leases(rt.db, rt.clock)
    kept = Kept()
    final = sender_for(rt, kept, hold=0)
    while await final.send_due():
        pass
    assert sorted(kept.kinds()) == ["ack", "ack", "operator_copy", "operator_copy"]


async def test_accepted_mail_whose_mark_fails_is_not_sent_again(rt, monkeypatch):
    new_ticket(rt, 1)
    kept = Kept()
    sender = sender_for(rt, kept, hold=0)
    target = sender.journal if sender.journal is not None else sender
    name = "record" if sender.journal is not None else "_mark_sent_in_table"
    real = getattr(target, name)

    def broken(*args) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(target, name, broken)
    assert await sender.send_due() == 1  # accepted by the server; the mark failed
    monkeypatch.setattr(target, name, real)
    while await sender.send_due():  # the copy; never the acknowledgement again
        pass
    assert sorted(kept.kinds()) == ["ack", "operator_copy"]
    await sender._fold_in_background()  # the failed mark is written with the next fold
    assert statuses(rt) == {"ack": ["sent"], "operator_copy": ["sent"]}
    assert sender.unfolded == set()


async def test_a_slow_relay_keeps_its_batch_leased(rt):
    for n in (1, 2, 3):
        new_ticket(rt, n)
    other_claims: list[str] = []
    other = sender_for(rt, Kept(), hold=0, owner="host-b:/var/lib/maild")

    class Slow(Kept):
        async def send(self, envelope_from, recipients, data):
            rt.clock.advance(seconds=90)  # each mail takes 90 s of the 2-minute lease
            if other.journal is None:  # PostgreSQL: another instance looks for work
                other_claims.extend(m.kind for m in other.claim())
            await super().send(envelope_from, recipients, data)

    slow = Slow()
    sender = sender_for(rt, slow, hold=0, owner="host-a:/var/lib/maild")
    assert await sender.send_due() == 3
    assert slow.kinds() == ["ack"] * 3
    assert "ack" not in other_claims  # renewed before it ran out: never sent twice


async def test_postgres_and_sqlite_both_end_with_rows_marked_sent(rt):
    new_ticket(rt, 1)
    sender = sender_for(rt, Kept(), hold=0)
    assert await sender.send_due() + await sender.send_due() == 2
    if sender.journal is not None:
        sender.fold()
    assert statuses(rt) == {"ack": ["sent"], "operator_copy": ["sent"]}


async def test_a_draft_that_cannot_be_composed_is_dead_not_retried(rt):
    new_ticket(rt, 1)
    new_ticket(rt, 2)
    with rt.db.session() as s, s.begin():
        row = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "ack")).first()
        broken = row.id
        s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == broken)
            .values(draft=row.draft.replace('"template":"ack"', '"template":"no_such_template"'))
        )
    kept = Kept()
    sender = sender_for(rt, kept, hold=0)
    assert await sender.send_due() == 1  # the other acknowledgement
    with rt.db.session() as s:
        dead = s.get(OutboxMessage, broken)
        assert dead.status == "dead" and "cannot compose" in dead.last_error
    assert await sender.send_due() == 2  # the copies: the queue is not blocked


async def test_temporary_failure_is_retried_after_backoff_and_never_lost(rt):
    new_ticket(rt, 1)
    kept = Kept(fail=1)
    sender = sender_for(rt, kept, hold=0)
    with pytest.raises(ConnectionError):
        await sender.send_due()
    with rt.db.session() as s:
        ack = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "ack")).one()
        assert (ack.status, ack.attempts) == ("pending", 1)
        assert "relay unreachable" in ack.last_error
        retry_at = ack.next_attempt_at
    assert retry_at.replace(tzinfo=UTC) > T0
    assert await sender.send_due() == 1  # the copy was not tried: it is due
    rt.clock.set(retry_at.replace(tzinfo=UTC) + timedelta(seconds=1))
    assert await sender.send_due() == 1
    assert sorted(kept.kinds()) == ["ack", "operator_copy"]


async def test_a_broken_template_fails_its_mails_not_the_sender(state_dir, db_url):
    custom = state_dir / "templates"
    shutil.copytree(ROOT / "templates", custom)
    (custom / "it" / "operator_copy.html.j2").write_text("{% if ticket %}never closed\n")
    cfg = make_config(state_dir, db_url=db_url, service={"templates_dir": str(custom)})
    db = Database(cfg.database_url)
    db.upgrade()
    rt = Runtime.create(cfg, db=db, clock=ManualClock(T0))
    try:
        assert list(rt.notifier.warm()) == ["it/operator_copy.html.j2"]  # logged, not raised
        new_ticket(rt, 1)
        kept = Kept()
        sender = sender_for(rt, kept, hold=0)
        while await sender.send_due():
            pass
        assert kept.kinds() == ["ack"]
        with rt.db.session() as s:
            copy = s.scalars(
                select(OutboxMessage).where(OutboxMessage.kind == "operator_copy")
            ).one()
        assert copy.status == "dead" and "TemplateSyntaxError" in copy.last_error
    finally:
        db.dispose()


def test_draft_round_trip_keeps_what_templates_read(rt):
    new_ticket(rt, 1)
    with rt.db.session() as s:
        ticket = s.scalars(select(Ticket)).one()
        text = drafts.dumps(
            {"ticket": ticket, "at": T0, "day": date(2026, 3, 10), "tags": {"b", "a"}}
        )
    back = drafts.loads(text)
    assert back["at"] == T0 and back["day"] == date(2026, 3, 10)
    assert back["tags"] == ["a", "b"]
    assert back["ticket"]["number"] == "2026-000001"
    assert back["ticket"]["title"] == "Richiesta 1"
    with pytest.raises(TypeError, match="cannot hold bytes"):
        drafts.dumps({"data": b"\x00"})
