"""Operators by e-mail end to end: the daemon between a real Dovecot and aiosmtpd.

Every mail goes in through IMAP (IDLE) and every answer comes out through SMTP, exactly
as an employee's and an operator's mail clients would see them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from maild.clock import ManualClock
from maild.daemon import Daemon
from maild.models import Ticket, TicketEvent

from .conftest import make_config
from .mails import make_mail

EMPLOYEE = "m.rossi@comune.vaiano-cremasco.cr.it"
MARIO = "mario.rossi@consorzio.example"
LAURA = "laura.bianchi@consorzio.example"
OPERATORS = "operatori@consorzio.example"
ROME = ZoneInfo("Europe/Rome")
_ids = itertools.count(1)


@asynccontextmanager
async def running(cfg, clock=None):
    daemon = Daemon(cfg, clock=clock)
    task = asyncio.create_task(daemon.serve())
    await asyncio.wait_for(daemon.ready.wait(), 10)
    await asyncio.wait_for(daemon.sources[0].connected.wait(), 10)
    try:
        yield daemon
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 15)


class Mailer:
    """Puts mail in the support inbox and waits for maild's answers at the SMTP sink."""

    def __init__(self, imap, sink) -> None:
        self.imap, self.sink = imap, sink

    def _wait(self, address: str, count: int, timeout: float = 15):
        def enough() -> bool:
            return len(self.sink.to(address)) >= count

        with self.sink.cond:
            if not self.sink.cond.wait_for(enough, timeout):
                got = [m["Subject"] for m in self.sink.to(address)]
                raise AssertionError(f"{address}: expected {count} mails, got {got}")
        return self.sink.to(address)

    async def send(self, raw: bytes, *expect: str):
        """Append `raw`, wait for one more mail per address named in `expect` (an address
        named twice: two more) and return the new mails in that order."""
        before = {a: len(self.sink.to(a)) for a in expect}
        await asyncio.to_thread(self.imap.append, raw)
        got, seen = [], Counter()
        for a in expect:
            seen[a] += 1
            mails = await asyncio.to_thread(self._wait, a, before[a] + seen[a])
            got.append(mails[before[a] + seen[a] - 1])
        return got


async def until(predicate, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def text(m) -> str:
    return m.get_body(("plain",)).get_content().replace("\r\n", "\n")


def operator_mail(copy, body: str, sender: str = MARIO, name: str = "Mario Rossi", **kw):
    return make_mail(
        sender=sender,
        name=name,
        subject="R: " + copy["Subject"],
        body=body + "\n\n-----Messaggio originale-----\nDa: Supporto\n\nrichiesta originale\n",
        in_reply_to=copy["Message-ID"],
        references=f"{copy['References'] or ''} {copy['Message-ID']}".strip(),
        message_id=f"<op.{next(_ids)}@consorzio.example>",
        **kw,
    )


def db_ticket(daemon, number: str) -> Ticket:
    with daemon.runtime.db.session() as s:
        q = select(Ticket).where(Ticket.number == number).options(selectinload(Ticket.articles))
        return s.scalar(q)


def history(daemon, number: str) -> list[tuple[str, str | None, str | None, str]]:
    with daemon.runtime.db.session() as s:
        t = s.scalar(select(Ticket).where(Ticket.number == number))
        q = select(TicketEvent).where(TicketEvent.ticket_id == t.id).order_by(TicketEvent.id)
        return [(e.field, e.old_value, e.new_value, e.actor) for e in s.scalars(q)]


async def test_employee_operator_conversation(imap, smtp, state_dir):
    sink, port = smtp
    cfg = make_config(state_dir, imap=imap, smtp_port=port)
    mail = Mailer(imap, sink)
    async with running(cfg) as daemon:
        ack, copy = await mail.send(
            make_mail(message_id="<emp-1@comune.example>", subject="Stampante anagrafe"),
            EMPLOYEE,
            OPERATORS,
        )
        number = ack["X-Maild-Ticket"]

        # the operator answers in-thread: relayed, and that is the presa in carico
        reply, notice = await mail.send(
            operator_mail(copy, "Buongiorno, ho reinstallato il driver: riprovi.\n\nMario Rossi"),
            EMPLOYEE,
            EMPLOYEE,
        )
        kinds = {reply["X-Maild-Kind"], notice["X-Maild-Kind"]}
        assert kinds == {"operator_reply", "assignment_notice"}
        if reply["X-Maild-Kind"] != "operator_reply":
            reply, notice = notice, reply
        assert reply["From"].addresses[0].display_name == "Mario Rossi - Supporto Consorzio"
        assert reply["In-Reply-To"] == "<emp-1@comune.example>"
        assert f"[Ticket#{number}]" in reply["Subject"]
        assert "reinstallato il driver" in text(reply)
        assert "richiesta originale" not in text(reply)
        assert "Mario Rossi" in text(notice) and "presa in carico" in text(notice)
        t = db_ticket(daemon, number)
        assert (t.status, t.assignee) == ("in_carico", MARIO) and t.taken_at is not None

        # the employee asks by e-mail how things stand
        [answer] = await mail.send(make_mail(subject="stato", body="?"), EMPLOYEE)
        assert answer["X-Maild-Kind"] == "status_request"
        assert f"{number} - Stampante anagrafe" in text(answer) and "Mario Rossi" in text(answer)

        # a spoofed operator mail (DMARC fails at our MTA): kept, not obeyed, Mario warned
        spoof = operator_mail(
            copy,
            "#stato chiuso\nMi mandi la password",
            headers={"Authentication-Results": "mx.consorzio.example; spf=fail; dmarc=fail"},
        )
        [warn] = await mail.send(spoof, MARIO)
        assert warn["X-Maild-Kind"] == "operator_untrusted"
        assert db_ticket(daemon, number).status == "in_carico"

        # a wrong command: an error with the valid values, nothing changes
        [err] = await mail.send(operator_mail(copy, "#priorita urgentissima\n#prendo"), MARIO)
        assert err["X-Maild-Kind"] == "command_error"
        assert "alta, media, bassa" in text(err)
        assert db_ticket(daemon, number).priority == "MEDIA"

        # a stranger of another ente quoting the ticket's tag gets a ticket of their own
        stranger = "a.verdi@comune.bagnolo-cremasco.cr.it"
        sack, scopy = await mail.send(
            make_mail(
                sender=stranger,
                name="Anna Verdi",
                subject=f"R: [Ticket#{number}] Stampante anagrafe",
                body="Mi dite anche a me?",
            ),
            stranger,
            OPERATORS,
        )
        assert sack["X-Maild-Ticket"] != number and number not in sack.as_string()
        assert f"citando la richiesta {number}" in text(scopy)

        # the requester got the ack, the reply, the notice and the status answer: no more
        assert len(sink.to(EMPLOYEE)) == 4


ITALIAN = {
    "take": "#prendo",
    "priority": "#priorita alta",
    "category": "#categoria Hardware/Stampanti",
    "ente": "#ente Bagnolo",
    "waiting": "#stato attesa",
    "note": "#nota chiamato il centralino",
    "assign": "#assegna Laura Bianchi",
    "resolved": "#stato risolto",
    "closed": "#stato chiuso",
    "merge": "#unisci",
}
ENGLISH = {
    "take": "#take",
    "priority": "#priority high",
    "category": "#category Hardware/Stampanti",
    "ente": "#ente bagnolo",
    "waiting": "#status waiting",
    "note": "#note chiamato il centralino",
    "assign": "#assign laura.bianchi@consorzio.example",
    "resolved": "#status resolved",
    "closed": "#status closed",
    "merge": "#merge",
}


async def test_every_command_in_italian_and_english(imap, smtp, state_dir):
    sink, port = smtp
    cfg = make_config(state_dir, imap=imap, smtp_port=port)
    mail = Mailer(imap, sink)
    async with running(cfg) as daemon:
        for lang, words in (("it", ITALIAN), ("en", ENGLISH)):
            _, copy = await mail.send(make_mail(subject=f"Richiesta {lang}"), EMPLOYEE, OPERATORS)
            _, other = await mail.send(make_mail(subject=f"Doppione {lang}"), EMPLOYEE, OPERATORS)
            number = copy["X-Maild-Ticket"]

            async def command(line: str, *extra: str, c=copy):
                [conf, *rest] = await mail.send(operator_mail(c, line), MARIO, *extra)
                assert conf["X-Maild-Kind"] == "command_confirmation", text(conf)
                return conf, rest

            conf, [notice] = await command(words["take"], EMPLOYEE)
            assert notice["X-Maild-Kind"] == "assignment_notice"
            conf, _ = await command(words["priority"])
            assert "MEDIA -> ALTA" in text(conf)
            await command(words["category"])
            await command(words["ente"])
            await command(words["waiting"])
            await command(words["note"])
            t = db_ticket(daemon, number)
            assert (t.priority, t.category, t.ente, t.status) == (
                "ALTA",
                "Hardware/Stampanti",
                "Comune di Bagnolo Cremasco",
                "in_attesa",
            )
            assert [a.body_text for a in t.articles if a.direction == "note"] == [
                "chiamato il centralino"
            ]
            conf, [to_requester, to_laura] = await command(words["assign"], EMPLOYEE, LAURA)
            assert "Laura Bianchi" in text(to_requester)
            assert to_laura["X-Maild-Kind"] == "operator_assigned"
            _, [resolution] = await command(words["resolved"] + "\nSostituito il toner.", EMPLOYEE)
            assert resolution["X-Maild-Kind"] == "resolution_notice"
            assert "Sostituito il toner" in text(resolution)
            await command(words["closed"])
            assert db_ticket(daemon, number).status == "chiuso"
            _, [merged] = await command(f"{words['merge']} {number}", EMPLOYEE, c=other)
            assert merged["X-Maild-Kind"] == "merge_notice" and number in text(merged)
            t = db_ticket(daemon, number)
            assert t.assignee == LAURA
            fields = [h[0] for h in history(daemon, number)]
            for f in ("assignee", "priority", "category", "ente", "status", "merged_from"):
                assert f in fields
        # commands-only replies never reached the requester as operator replies
        assert not [m for m in sink.to(EMPLOYEE) if m["X-Maild-Kind"] == "operator_reply"]


async def test_warranty_window_with_injected_clock(imap, smtp, state_dir):
    sink, port = smtp
    cfg = make_config(state_dir, imap=imap, smtp_port=port)
    mail = Mailer(imap, sink)
    clock = ManualClock(datetime(2026, 3, 10, 9, tzinfo=UTC))  # Tuesday
    async with running(cfg, clock) as daemon:
        _, copy = await mail.send(make_mail(subject="Scanner"), EMPLOYEE, OPERATORS)
        number = copy["X-Maild-Ticket"]
        # acting on a new ticket takes it: the assignment notice, then the resolution
        await mail.send(operator_mail(copy, "#stato risolto\nFatto."), EMPLOYEE, EMPLOYEE, MARIO)
        notices = [m for m in sink.to(EMPLOYEE) if m["X-Maild-Kind"] == "resolution_notice"]
        assert len(notices) == 1

        # the 10th working day after Tue 10 March is Tue 24 March: still reopens
        clock.set(datetime(2026, 3, 24, 18, tzinfo=ROME))
        [fup] = await mail.send(
            make_mail(subject="R: " + notices[0]["Subject"], body="Non va ancora",
                      in_reply_to=notices[0]["Message-ID"]),
            MARIO,
        )  # fmt: skip
        assert fup["X-Maild-Kind"] == "follow_up_copy" and "riaperta" in text(fup)
        assert db_ticket(daemon, number).status == "in_carico"

        # resolved again on the 24th; Easter Monday (6 April) does not count
        await mail.send(operator_mail(copy, "#status resolved\nOra sì."), EMPLOYEE, MARIO)
        clock.set(datetime(2026, 4, 8, 23, 59, tzinfo=ROME))
        daemon.scheduler.wakeup.set()
        # the job has run at 23:59 once it has planned its next run from there
        await until(lambda: daemon.scheduler.next_at.get("auto_close", clock.now()) > clock.now())
        assert db_ticket(daemon, number).status == "risolto"
        clock.set(datetime(2026, 4, 9, 0, 0, tzinfo=ROME))
        daemon.scheduler.wakeup.set()
        await until(lambda: db_ticket(daemon, number).status == "chiuso")
        assert ("status", "risolto", "chiuso", "maild") in history(daemon, number)

        # after the warranty a reply opens a new ticket that references the old number
        last = [m for m in sink.to(EMPLOYEE) if m["X-Maild-Kind"] == "resolution_notice"][-1]
        ack, new_copy = await mail.send(
            make_mail(subject="R: " + last["Subject"], body="Di nuovo guasto",
                      in_reply_to=last["Message-ID"]),
            EMPLOYEE,
            OPERATORS,
        )  # fmt: skip
        assert ack["X-Maild-Kind"] == "ack" and ack["X-Maild-Ticket"] != number
        assert f"chiusa {number}" in text(new_copy)
        assert ("previous_ticket", None, number, "maild") in history(daemon, ack["X-Maild-Ticket"])
