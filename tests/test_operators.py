"""Operators by e-mail: replies, commands, lifecycle, who may write, status requests.

Driven through the Ingestor (the daemon's path) on SQLite and PostgreSQL; the outbox is
read back as the mails that would leave.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
from sqlalchemy import select

from maild.clock import ManualClock
from maild.db import Database
from maild.ingest import InboundItem, Ingestor, Runtime
from maild.models import Article, OutboxMessage, Ticket, TicketEvent
from maild.operators.auth import authentication_failures, parse_authentication_results
from maild.operators.commands import is_status_request_line, parse_operator_text
from maild.operators.lifecycle import AutoCloseJob, warranty_end
from maild.queries import format_show, show_ticket
from maild.sla.deadline import take_charge_due

from .conftest import OPERATORS, make_config
from .mails import make_mail

T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)  # Tuesday, 10:00 in Rome
EMPLOYEE = "m.rossi@comune.vaiano-cremasco.cr.it"
MARIO = "mario.rossi@consorzio.example"
LAURA = "laura.bianchi@consorzio.example"
NUM = "2026-000001"
QUOTE = (
    "\n\n-----Messaggio originale-----\nDa: Supporto Consorzio\nInviato: martedì\n"
    "Oggetto: Nuova richiesta\n\nLa stampante dell'ufficio anagrafe non stampa più.\n"
)


def runtime(state_dir, db_url, **overrides) -> Runtime:
    cfg = make_config(state_dir, db_url=db_url, **overrides)
    db = Database(cfg.database_url)
    db.upgrade()
    return Runtime.create(cfg, db=db, clock=ManualClock(T0))


@pytest.fixture
def rt(state_dir, db_url):
    r = runtime(state_dir, db_url, service={"comment_address": "supporto+nota@consorzio.example"})
    yield r
    r.db.dispose()


def ingest(rt: Runtime, raw: bytes):
    return Ingestor(rt).ingest(InboundItem(raw, "supporto"))


def mails(rt: Runtime, kind: str | None = None, to: str | None = None):
    with rt.db.session() as s:
        q = select(OutboxMessage).order_by(OutboxMessage.id)
        if kind:
            q = q.where(OutboxMessage.kind == kind)
        rows = list(s.scalars(q))
    out = [(r, message_from_bytes(rt.notifier.wire(r), policy=default_policy)) for r in rows]
    return [m for r, m in out if to is None or to in r.recipients]


def text(m) -> str:
    return m.get_body(("plain",)).get_content().replace("\r\n", "\n")


def ticket(rt: Runtime, number: str = NUM) -> Ticket:
    with rt.db.session() as s:
        return s.scalar(select(Ticket).where(Ticket.number == number))


def events(rt: Runtime, number: str = NUM) -> list[tuple[str, str | None, str | None, str]]:
    with rt.db.session() as s:
        t = s.scalar(select(Ticket).where(Ticket.number == number))
        rows = s.scalars(select(TicketEvent).where(TicketEvent.ticket_id == t.id))
        return [(e.field, e.old_value, e.new_value, e.actor) for e in rows]


def articles(rt: Runtime, number: str = NUM) -> list[Article]:
    with rt.db.session() as s:
        t = s.scalar(select(Ticket).where(Ticket.number == number))
        return list(s.scalars(select(Article).where(Article.ticket_id == t.id)))


def new_ticket(rt: Runtime, **kw):
    kw.setdefault("message_id", "<req1@comune.example>")
    res = ingest(rt, make_mail(**kw))
    assert res.outcome == "new_ticket"
    return mails(rt, "operator_copy")[-1]


def operator_reply(copy, body: str, sender: str = MARIO, name: str = "Mario Rossi", **kw):
    refs = f"{copy['References'] or ''} {copy['Message-ID']}".strip()
    return make_mail(
        sender=sender,
        name=name,
        subject="R: " + copy["Subject"],
        body=body + QUOTE,
        in_reply_to=copy["Message-ID"],
        references=refs,
        **kw,
    )


# -- parsing --------------------------------------------------------------------------------


def test_commands_are_the_lines_at_the_top():
    p = parse_operator_text("#Prendo\n\n#PRIORITÀ Alta\n#stato attesa\nCiao,\n#nota non qui\n")
    assert [(c.name, c.arg) for c in p.commands] == [
        ("take", ""),
        ("priority", "Alta"),
        ("status", "attesa"),
    ]
    assert p.public == "Ciao,\n#nota non qui" and p.note is None
    p = parse_operator_text("#take\n#note the rest\nis internal\n#status closed\n")
    assert p.note == "the rest\nis internal\n#status closed" and p.public == ""
    assert parse_operator_text("#prendo\n\n-- \nMario Rossi\nConsorzio\n").public == ""
    p = parse_operator_text("#chiudi subito\nTesto")
    assert p.errors[0].problem == "unknown_command" and p.public == "Testo"
    assert parse_operator_text("Buongiorno, #prendo\n").commands == []


def test_status_request_line():
    assert is_status_request_line("\n  #Stato \nqualcosa")
    assert is_status_request_line("#status")
    assert not is_status_request_line("#stato risolto")
    assert not is_status_request_line("ciao\n#stato")


def test_authentication_results():
    h = (
        "mx.consorzio.example 1; spf=pass (sender ok) smtp.mailfrom=consorzio.example;"
        ' dkim=none; dmarc=fail (p=reject dis=none) header.from="consorzio.example"'
    )
    parsed = parse_authentication_results(h)
    assert parsed.authserv_id == "mx.consorzio.example"
    assert parsed.results == {"spf": "pass", "dkim": "none", "dmarc": "fail"}
    assert authentication_failures([h], None) == ["dmarc=fail"]
    assert authentication_failures([h], "MX.consorzio.example") == ["dmarc=fail"]
    # another server's verdict is not ours to trust (nor to fear) once ours is named
    assert authentication_failures([h], "mx.other.example") == []
    ok = "mx.consorzio.example; spf=pass smtp.mailfrom=x; dmarc=pass"
    assert authentication_failures([ok, "evil; spf=fail"], "mx.consorzio.example") == []
    assert authentication_failures([ok, "evil; spf=fail"], None) == ["spf=fail"]
    assert authentication_failures(["mx; none"], None) == []


# -- replies and presa in carico --------------------------------------------------------------


def test_operator_reply_takes_charge_and_is_relayed_on_the_requester_thread(rt):
    copy = new_ticket(rt, name="Marta Rossi")
    rt.clock.advance(minutes=30)
    pdf = b"%PDF-1.4 istruzioni"
    res = ingest(
        rt,
        operator_reply(
            copy,
            "Buongiorno, provi a riavviare lo spooler.\n\nMario Rossi\nConsorzio",
            attachments=[("istruzioni.pdf", "application/pdf", pdf)],
        ),
    )
    assert res.outcome == "operator_reply" and res.ticket_number == NUM
    t = ticket(rt)
    assert (t.status, t.assignee, t.taken_at) == ("in_carico", MARIO, T0 + timedelta(minutes=30))

    [reply] = mails(rt, "operator_reply")
    assert reply["To"] == EMPLOYEE
    assert reply["From"].addresses[0].display_name == "Mario Rossi - Supporto Consorzio"
    assert reply["From"].addresses[0].addr_spec == "supporto@consorzio.example"
    assert f"[Ticket#{NUM}]" in reply["Subject"]
    assert reply["In-Reply-To"] == "<req1@comune.example>"
    body = text(reply)
    assert "spooler" in body and "Mario Rossi\nConsorzio" in body
    assert "Messaggio originale" not in body and "anagrafe" not in body  # no quoted history
    [att] = list(reply.iter_attachments())
    assert att.get_filename() == "istruzioni.pdf" and att.get_content() == pdf

    [notice] = mails(rt, "assignment_notice")
    assert notice["To"] == EMPLOYEE and "Mario Rossi" in text(notice)
    assert "Mario Rossi" in notice.get_body(("html",)).get_content()
    assert mails(rt, "command_confirmation") == []  # a plain reply confirms nothing

    out = [a for a in articles(rt) if a.direction == "out"]
    assert len(out) == 1 and not out[0].internal and "spooler" in out[0].body_text
    assert "Messaggio originale" not in out[0].body_text
    fields = [e[0] for e in events(rt)]
    assert fields == ["created", "assignee", "taken_at", "status"]

    # a second reply: no new presa in carico, taken_at kept
    rt.clock.advance(hours=1)
    ingest(rt, operator_reply(copy, "Ha funzionato?"))
    assert ticket(rt).taken_at == T0 + timedelta(minutes=30)
    assert len(mails(rt, "assignment_notice")) == 1
    assert len(mails(rt, "operator_reply")) == 2

    # the requester's answer threads on the ticket and goes to the assignee
    res = ingest(
        rt,
        make_mail(
            subject="R: " + reply["Subject"], body="Sì grazie", in_reply_to=reply["Message-ID"]
        ),
    )
    assert res.outcome == "follow_up" and res.ticket_number == NUM
    assert mails(rt, "follow_up_copy")[-1]["To"] == MARIO


ITALIAN = ["#prendo", "#priorita alta", "#categoria Stampanti / Spooler", "#ente bagnolo"]
ENGLISH = ["#take", "#priority high", "#category Stampanti/Spooler", "#ente Bagnolo"]


@pytest.mark.parametrize("lines", [ITALIAN, ENGLISH], ids=["italian", "english"])
def test_commands_change_the_ticket_and_are_confirmed_once(rt, lines):
    copy = new_ticket(rt)
    res = ingest(rt, operator_reply(copy, "\n".join(lines)))
    assert res.outcome == "operator_commands"
    t = ticket(rt)
    assert (t.assignee, t.status, t.priority) == (MARIO, "in_carico", "ALTA")
    assert t.category == "Stampanti/Spooler" and t.ente == "Comune di Bagnolo Cremasco"
    cfg = rt.cfg
    assert t.sla_due_at == take_charge_due(
        cfg, cfg.ente_by_name(t.ente), "ALTA", datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    )
    assert mails(rt, "operator_reply") == []  # commands only: nothing relayed
    [conf] = mails(rt, "command_confirmation")
    assert conf["To"] == MARIO
    body = text(conf)
    for word in ("Priorità: MEDIA -> ALTA", "Categoria: Stampanti/Spooler", "Bagnolo", MARIO):
        assert word in body
    fields = {e[0] for e in events(rt)}
    assert {"priority", "sla_due_at", "category", "ente", "assignee", "status"} <= fields
    assert all(e[3] == MARIO for e in events(rt) if e[0] != "created")
    assert len(mails(rt, "assignment_notice")) == 1


@pytest.mark.parametrize(
    "waiting,resolved,closed",
    [("#stato attesa", "#stato risolto", "#stato chiuso"),
     ("#status waiting", "#status resolved", "#status closed")],
)  # fmt: skip
def test_status_commands_and_requester_replies(rt, waiting, resolved, closed):
    copy = new_ticket(rt)
    ingest(rt, operator_reply(copy, f"{waiting}\nMi manda il modello della stampante?"))
    t = ticket(rt)
    assert t.status == "in_attesa" and t.assignee == MARIO  # acting on it took it
    [ask] = mails(rt, "operator_reply")
    assert "modello" in text(ask)

    # the requester answers: back in carico, the assignee is told
    ingest(
        rt, make_mail(subject="R: " + ask["Subject"], body="HP 400", in_reply_to=ask["Message-ID"])
    )
    assert ticket(rt).status == "in_carico"
    fup = mails(rt, "follow_up_copy")[-1]
    assert fup["To"] == MARIO and "torna in carico" in text(fup)

    ingest(rt, operator_reply(copy, f"{resolved}\nDriver aggiornato, ora stampa."))
    t = ticket(rt)
    assert t.status == "risolto" and t.resolved_at == T0
    [res_notice] = mails(rt, "resolution_notice")
    assert res_notice["To"] == EMPLOYEE and "Driver aggiornato" in text(res_notice)
    assert res_notice["From"].addresses[0].display_name == "Mario Rossi - Supporto Consorzio"
    assert len(mails(rt, "operator_reply")) == 1  # the text went in the notice only

    ingest(rt, operator_reply(copy, closed))
    assert ticket(rt).status == "chiuso" and ticket(rt).closed_at == T0
    statuses = [(o, n) for f, o, n, _ in events(rt) if f == "status"]
    assert statuses == [
        ("nuovo", "in_carico"),
        ("in_carico", "in_attesa"),
        ("in_attesa", "in_carico"),
        ("in_carico", "risolto"),
        ("risolto", "chiuso"),
    ]
    assert len(mails(rt, "command_confirmation")) == 3


def test_wrong_command_changes_nothing_and_lists_the_valid_ones(rt):
    copy = new_ticket(rt)
    res = ingest(rt, operator_reply(copy, "#prendo\n#priorita urgentissima\n#frobnica\nTesto"))
    assert res.outcome == "operator_command_error"
    t = ticket(rt)
    assert (t.status, t.assignee, t.priority, t.taken_at) == ("nuovo", None, "MEDIA", None)
    assert [e[0] for e in events(rt)] == ["created"]
    assert mails(rt, "operator_reply") == [] and mails(rt, "assignment_notice") == []
    [err] = mails(rt, "command_error")
    assert err["To"] == MARIO
    body = text(err)
    assert "#priorita urgentissima" in body and "alta, media, bassa, high, medium, low" in body
    assert "#frobnica" in body and "comando sconosciuto" in body
    assert "#assegna" in body  # the list of commands


BAD_VALUES = [
    ("#assegna nessuno@consorzio.example", "Mario Rossi <mario.rossi@consorzio.example>"),
    ("#stato", "manca il valore"),
    ("#ente Atlantide", "Comune di Vaiano Cremasco"),
    ("#unisci 2026-000099", "richiesta inesistente"),
    ("#categoria a/b/c", "categoria/sottocategoria"),
]


def test_bad_values_are_refused(rt):
    for i, (line, problem) in enumerate(BAD_VALUES, start=1):
        copy = new_ticket(rt, message_id=f"<bad{i}@comune.example>")
        assert ingest(rt, operator_reply(copy, line)).outcome == "operator_command_error"
        assert problem in text(mails(rt, "command_error")[-1]), line
        assert ticket(rt, copy["X-Maild-Ticket"]).status == "nuovo"
    copy = mails(rt, "operator_copy")[0]
    assert ingest(rt, operator_reply(copy, "#merge 2026-000001")).outcome.endswith("error")
    assert "se stessa" in text(mails(rt, "command_error")[-1])


@pytest.mark.parametrize("line", ["#assegna Laura", "#assign laura.bianchi@consorzio.example"])
def test_reassignment_tells_requester_and_both_operators(state_dir, db_url, line):
    lucia = {"name": "Lucia Capo", "email": "lucia.capo@consorzio.example"}
    rt = runtime(state_dir, db_url, operator=[*OPERATORS, lucia])
    copy = new_ticket(rt)
    ingest(rt, operator_reply(copy, "#prendo"))
    assert len(mails(rt, "assignment_notice")) == 1
    # the coordinator moves it
    ingest(rt, operator_reply(copy, line, sender=lucia["email"], name="Lucia Capo"))
    t = ticket(rt)
    assert t.assignee == LAURA and t.taken_at == T0
    notices = mails(rt, "assignment_notice")
    assert len(notices) == 2 and "Laura Bianchi" in text(notices[1])
    assert "Mario Rossi" in text(notices[1])  # instead of whom
    told = mails(rt, "operator_assigned")
    assert sorted(m["To"] for m in told) == sorted([MARIO, LAURA])
    assert ("assignee", MARIO, LAURA, lucia["email"]) in events(rt)
    # someone who is not an operator cannot command
    stranger = "x@consorzio.example"
    ingest(rt, operator_reply(copy, "#assegna Mario", sender=stranger, name="X"))
    assert ticket(rt).assignee == LAURA
    rt.db.dispose()


def test_commands_only_from_operators(rt):
    copy = new_ticket(rt)
    res = ingest(rt, operator_reply(copy, "#stato chiuso", sender=EMPLOYEE, name="Marta"))
    assert res.outcome == "follow_up" and ticket(rt).status == "nuovo"


@pytest.mark.parametrize("line", ["#nota", "#note"])
def test_internal_note_is_not_relayed(rt, line):
    copy = new_ticket(rt)
    res = ingest(rt, operator_reply(copy, f"{line} il cliente usa ancora XP\nda verificare"))
    assert res.outcome == "operator_note"
    [note] = [a for a in articles(rt) if a.direction == "note"]
    assert note.internal and note.body_text.startswith("il cliente usa ancora XP\nda verificare")
    assert mails(rt, "operator_reply") == [] and mails(rt, "assignment_notice") == []
    assert ticket(rt).status == "nuovo"  # a note is not a presa in carico
    assert "Nota interna" in text(mails(rt, "command_confirmation")[0])


def test_comment_address_makes_a_note(rt):
    copy = new_ticket(rt)
    raw = operator_reply(copy, "Parlato al telefono, richiamo domani.")
    raw = raw.replace(b"To: supporto@consorzio.example", b"To: supporto+nota@consorzio.example")
    assert ingest(rt, raw).outcome == "operator_note"
    [note] = [a for a in articles(rt) if a.direction == "note"]
    assert note.internal and "richiamo domani" in note.body_text
    assert mails(rt, "operator_reply") == [] and mails(rt, "command_confirmation") == []


def test_spoofed_operator_is_stored_not_obeyed(rt):
    copy = new_ticket(rt)
    ar = "mx.consorzio.example; spf=pass smtp.mailfrom=evil.example; dmarc=fail header.from=consorzio.example"
    raw = operator_reply(
        copy, "#stato chiuso\nLe mando le credenziali", headers={"Authentication-Results": ar}
    )
    assert ingest(rt, raw).outcome == "operator_untrusted"
    t = ticket(rt)
    assert (t.status, t.assignee) == ("nuovo", None)
    assert len(mails(rt, to=EMPLOYEE)) == 1  # the requester got the ack, nothing more
    [warn] = mails(rt, "operator_untrusted")
    assert warn["To"] == MARIO and "dmarc=fail" in text(warn)
    [stored] = [a for a in articles(rt) if a.sender == MARIO]
    assert stored.internal and "credenziali" in stored.body_text
    assert ("untrusted", None, "dmarc=fail", MARIO) in events(rt)


def test_trusted_authserv_id_decides_which_header_counts(state_dir, db_url):
    rt = runtime(state_dir, db_url, service={"trusted_authserv_id": "mx.consorzio.example"})
    copy = new_ticket(rt)
    foreign = "relay.other.example; spf=fail smtp.mailfrom=consorzio.example"
    ours = "mx.consorzio.example; spf=pass; dmarc=pass"
    raw = operator_reply(copy, "#prendo", headers={"Authentication-Results": foreign})
    raw = b"Authentication-Results: " + ours.encode() + b"\r\n" + raw
    assert ingest(rt, raw).outcome == "operator_commands"
    assert ticket(rt).assignee == MARIO
    bad = operator_reply(
        copy, "#priorita alta", headers={"Authentication-Results": "mx.consorzio.example; spf=fail"}
    )
    assert ingest(rt, bad).outcome == "operator_untrusted"
    assert ticket(rt).priority == "MEDIA"
    rt.db.dispose()


# -- who may write on a ticket ---------------------------------------------------------------


def test_stranger_with_another_entes_tag_gets_own_ticket(rt):
    new_ticket(rt, subject="Password del gestionale protocollo")
    stranger = "a.verdi@comune.bagnolo-cremasco.cr.it"
    res = ingest(
        rt,
        make_mail(
            sender=stranger,
            name="Anna Verdi",
            subject=f"R: [Ticket#{NUM}] Password del gestionale protocollo",
            body="Anche io ho lo stesso problema",
            in_reply_to="<req1@comune.example>",
        ),
    )
    assert res.outcome == "new_ticket" and res.ticket_number == "2026-000002"
    t2 = ticket(rt, "2026-000002")
    assert t2.requester_email == stranger and t2.ente == "Comune di Bagnolo Cremasco"
    assert ("attempted_ticket", None, NUM, "maild") in events(rt, "2026-000002")
    assert len(articles(rt)) == 1  # nothing added to the first ticket
    [ack] = mails(rt, "ack", to=stranger)
    assert NUM not in ack.as_string() and "2026-000002" in ack["Subject"]
    copy = mails(rt, "operator_copy")[-1]
    assert f"citando la richiesta {NUM}" in text(copy)


def test_watchers_may_write_and_receive_updates(rt):
    colleague = "g.bianchi@comune.vaiano-cremasco.cr.it"
    copy = new_ticket(rt, to=f"supporto@consorzio.example, {colleague}")
    assert ticket(rt).watchers == [colleague]
    ingest(rt, operator_reply(copy, "Verifico subito."))
    [reply] = mails(rt, "operator_reply")
    assert reply["Cc"] == colleague
    res = ingest(
        rt,
        make_mail(
            sender=colleague,
            name="G. Bianchi",
            subject=f"R: [Ticket#{NUM}] x",
            body="Succede anche a me",
        ),
    )
    assert res.outcome == "follow_up" and res.ticket_number == NUM


def test_same_ente_policy(state_dir, db_url):
    rt = runtime(state_dir, db_url, lifecycle={"same_ente_follow_up": True, "watchers": False})
    new_ticket(rt, to="supporto@consorzio.example, g.b@comune.vaiano-cremasco.cr.it")
    assert ticket(rt).watchers == []
    same = make_mail(sender="x.y@comune.vaiano-cremasco.cr.it", subject=f"[Ticket#{NUM}] x")
    assert ingest(rt, same).outcome == "follow_up"
    other = make_mail(sender="x.y@comune.bagnolo-cremasco.cr.it", subject=f"[Ticket#{NUM}] x")
    assert ingest(rt, other).outcome == "new_ticket"
    rt.db.dispose()


def test_out_of_office_never_changes_status(rt):
    copy = new_ticket(rt)
    ingest(rt, operator_reply(copy, "#stato attesa\nMi serve il numero di serie"))
    [ask] = mails(rt, "operator_reply")
    oof = make_mail(
        subject="Risposta automatica: " + ask["Subject"],
        body="Sono fuori ufficio.",
        in_reply_to=ask["Message-ID"],
        headers={"Auto-Submitted": "auto-replied"},
    )
    assert ingest(rt, oof).outcome == "auto_reply"
    assert ticket(rt).status == "in_attesa"


# -- warranty window and automatic closing ------------------------------------------------------


def test_warranty_counts_working_days_of_the_ente(rt):
    copy = new_ticket(rt)
    ingest(rt, operator_reply(copy, "#stato risolto\nFatto."))
    t = ticket(rt)
    # from Tue 10 March: 11,12,13,16,17,18,19,20,23,24 -> closes at midnight of the 25th
    rome = rt.cfg.service.tz
    assert warranty_end(rt.cfg, t) == datetime(2026, 3, 25, tzinfo=rome)
    # Thu 2 April: Easter Monday (6 April) is a holiday, so the 10th working day is the 17th
    t.resolved_at = datetime(2026, 4, 2, 10, tzinfo=UTC)
    assert warranty_end(rt.cfg, t) == datetime(2026, 4, 18, tzinfo=rome)


def test_reply_within_warranty_reopens(rt):
    copy = new_ticket(rt)
    ingest(rt, operator_reply(copy, "#stato risolto\nFatto."))
    [notice] = mails(rt, "resolution_notice")
    rt.clock.set(datetime(2026, 3, 24, 17, tzinfo=UTC))  # 18:00 in Rome, last day
    res = ingest(
        rt,
        make_mail(subject="R: " + notice["Subject"], body="Non va di nuovo", in_reply_to=notice["Message-ID"]),
    )  # fmt: skip
    assert res.outcome == "follow_up" and res.ticket_number == NUM
    t = ticket(rt)
    assert t.status == "in_carico" and t.resolved_at is None
    fup = mails(rt, "follow_up_copy")[-1]
    assert fup["To"] == MARIO and "riaperta" in text(fup)


def test_after_warranty_reply_opens_new_ticket_referencing_old(rt):
    copy = new_ticket(rt)
    ingest(rt, operator_reply(copy, "#stato risolto\nFatto."))
    [notice] = mails(rt, "resolution_notice")
    job = AutoCloseJob()
    rt.clock.set(datetime(2026, 3, 24, 22, 59, tzinfo=UTC))  # 23:59 Rome on the 24th
    assert job.run_due(rt) == datetime(2026, 3, 24, 23, 0, tzinfo=UTC)
    assert ticket(rt).status == "risolto"
    rt.clock.set(datetime(2026, 3, 24, 23, 0, tzinfo=UTC))
    assert job.run_due(rt) is None
    assert job.run_due(rt) is None  # again: nothing more to do, closed once
    t = ticket(rt)
    assert t.status == "chiuso" and t.closed_at == datetime(2026, 3, 24, 23, 0, tzinfo=UTC)
    assert [e for e in events(rt) if e[0] == "status"][-1] == (
        "status",
        "risolto",
        "chiuso",
        "maild",
    )

    res = ingest(
        rt,
        make_mail(subject="R: " + notice["Subject"], body="Di nuovo rotta", in_reply_to=notice["Message-ID"]),
    )  # fmt: skip
    assert res.outcome == "new_ticket" and res.ticket_number == "2026-000002"
    assert ("previous_ticket", None, NUM, "maild") in events(rt, "2026-000002")
    assert ticket(rt).status == "chiuso"
    assert "chiusa " + NUM in text(mails(rt, "operator_copy")[-1])


def test_resolved_past_warranty_before_the_job_runs_counts_as_closed(rt):
    copy = new_ticket(rt)
    ingest(rt, operator_reply(copy, "#status resolved"))
    rt.clock.set(datetime(2026, 4, 1, 9, tzinfo=UTC))
    res = ingest(rt, make_mail(subject=f"R: [Ticket#{NUM}] x", body="ancora"))
    assert res.outcome == "new_ticket"
    assert ticket(rt).status == "chiuso"


# -- merge --------------------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["#unisci", "#merge"])
def test_merge(rt, word):
    new_ticket(rt)
    other = "g.bianchi@comune.vaiano-cremasco.cr.it"
    ingest(rt, make_mail(sender=other, subject="Anche la mia stampante", message_id="<req2@c>"))
    copy2 = mails(rt, "operator_copy")[-1]
    ingest(rt, operator_reply(copy2, f"{word} [Ticket#{NUM}]"))
    t2 = ticket(rt, "2026-000002")
    assert t2.status == "chiuso" and t2.merged_into_id == ticket(rt).id
    assert other in ticket(rt).watchers
    [told] = mails(rt, "merge_notice")
    assert told["To"] == other and NUM in text(told)
    # later mail on the merged ticket lands on the target
    res = ingest(rt, make_mail(sender=other, subject="R: x", in_reply_to="<req2@c>"))
    assert res.ticket_number == NUM and res.outcome == "follow_up"
    assert ("merged_from", None, "2026-000002", MARIO) in events(rt)


# -- status requests ------------------------------------------------------------------------------


def test_status_request_by_subject_lists_open_tickets(rt):
    copy = new_ticket(rt, subject="Stampante")
    ingest(rt, make_mail(subject="Scanner"))
    ingest(rt, operator_reply(copy, "#prendo"))
    before = len(mails(rt))
    res = ingest(rt, make_mail(subject="I miei ticket?", body=""))
    assert res.outcome == "status_request" and res.ticket_number is None
    with rt.db.session() as s:
        assert len(s.scalars(select(Ticket)).all()) == 2
    [answer] = mails(rt, "status_request")
    assert len(mails(rt)) == before + 1
    assert answer["To"] == EMPLOYEE and answer["Auto-Submitted"] == "auto-replied"
    body = text(answer)
    assert "2026-000001 - Stampante" in body and "2026-000002 - Scanner" in body
    assert "Mario Rossi" in body and "presa in carico il 10/03/2026 10:00" in body
    assert "presa in carico prevista entro" in body  # the second ticket's target
    other = make_mail(sender="nessuno@comune.bagnolo-cremasco.cr.it", subject="STATO")
    assert ingest(rt, other).outcome == "status_request"
    assert "Non risultano" in text(mails(rt, "status_request")[-1])


def test_status_request_by_hash_stato_reply(rt):
    new_ticket(rt)
    [ack] = mails(rt, "ack")
    raw = make_mail(subject="R: " + ack["Subject"], body="#stato\n", in_reply_to=ack["Message-ID"])
    assert ingest(rt, raw).outcome == "status_request"
    assert len(articles(rt)) == 1 and ticket(rt).status == "nuovo"


# -- history ------------------------------------------------------------------------------------


def test_ticket_show_has_the_history(rt):
    copy = new_ticket(rt)
    ingest(rt, operator_reply(copy, "#prendo\n#priority low"))
    shown = show_ticket(rt.db, rt.cfg, NUM)
    changes = [(h["field"], h["old"], h["new"], h["actor"]) for h in shown["history"]]
    assert ("priority", "MEDIA", "BASSA", MARIO) in changes
    assert ("status", "nuovo", "in_carico", MARIO) in changes
    assert "priority MEDIA -> BASSA" in format_show(shown)


def test_closing_a_new_ticket_is_not_a_presa_in_carico(rt):
    copy = new_ticket(rt)
    assert ingest(rt, operator_reply(copy, "#status closed")).outcome == "operator_commands"
    t = ticket(rt)
    assert (t.status, t.assignee, t.taken_at) == ("chiuso", None, None)
    assert mails(rt, "assignment_notice") == []
    assert len(mails(rt, to=EMPLOYEE)) == 1  # just the acknowledgement


def test_lower_priority_lifts_the_overdue_mark(rt):
    """An ALTA ticket past its 8 hours, lowered to BASSA (16 hours): no longer overdue,
    the history and the confirmation say so."""
    from maild.sla.escalation import sla_jobs

    copy = new_ticket(rt, subject="[ALTA] Server fermo")
    assert ticket(rt).priority == "ALTA"
    rt.clock.set(datetime(2026, 3, 11, 16, 0, tzinfo=UTC))  # 10 working hours later
    for job in sla_jobs(rt.cfg):
        job.run_due(rt)
    assert ticket(rt).overdue
    ingest(rt, operator_reply(copy, "#priorita bassa"))
    assert not ticket(rt).overdue
    assert ("overdue", "True", "False", MARIO) in events(rt)
    [conf] = mails(rt, "command_confirmation")
    assert "Presa in carico scaduta: no" in text(conf)
