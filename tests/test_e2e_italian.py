"""End to end through real Dovecot and aiosmtpd: Italian Outlook and Exchange mail and a PEC
envelope, read by the daemon from IMAP exactly as in production."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import select

from maild.clock import ManualClock
from maild.daemon import prepare_database
from maild.ingest import Runtime
from maild.models import Article, InboundMessage, Ticket

from .conftest import SHARED, make_config
from .test_e2e_imap import outbox_statuses, running, wait_until
from .test_italian_mail import SAMPLES, open_ticket
from .test_pec_intake import REQUESTER, envelope, request

OUTLOOK_REPLY = "a03-outlook2016-reply-threading-stripped.eml"  # no In-Reply-To/References
EXCHANGE_OOF = "a19-exchange2016-oof-no-auto-submitted.eml"  # no Auto-Submitted either
OOF_SENDER = "claudia.bosio@comune.crema.cr.it"


async def test_outlook_reply_exchange_oof_and_pec_envelope(imap, smtp, state_dir):
    sink, port = smtp
    cfg = make_config(state_dir, imap=imap, smtp_port=port)
    # the tickets the Outlook reply and the out-of-office refer to, numbered as in the samples
    db = prepare_database(cfg)
    seed = Runtime.create(cfg, db=db, clock=ManualClock(datetime(2026, 3, 20, 9, tzinfo=UTC)))
    open_ticket(seed, "2026-000123", "m.rossi@comune.vaiano-cremasco.cr.it", status="in_attesa")
    open_ticket(seed, "2026-000126", OOF_SENDER, status="in_carico")
    db.dispose()

    imap.append((SAMPLES / OUTLOOK_REPLY).read_bytes())
    imap.append((SAMPLES / EXCHANGE_OOF).read_bytes())
    imap.append(envelope(request(message_id="<pec-e2e@comune.vaiano-cremasco.cr.it>")))
    # a PEC receipt for a mail no ticket knows: set aside in the receipts folder
    imap.append((SHARED / "corpus/pec/go-pec/accettazione.eml").read_bytes())

    async with running(cfg) as daemon:
        rdb = daemon.runtime.db
        # follow-up copy of the reply, then the PEC request's acknowledgement and copy
        await asyncio.to_thread(sink.wait_for, 3, 15)
        await wait_until(lambda: imap.count("maild/processed") == 3, 15)
        await wait_until(lambda: imap.count("maild/receipts") == 1, 15)
        await wait_until(lambda: outbox_statuses(rdb) == {"sent"})
        assert imap.count("INBOX") == 0

        with rdb.session() as s:
            outcomes = s.scalars(select(InboundMessage.outcome)).all()
            by_number = {t.number: t for t in s.scalars(select(Ticket))}
            reply_articles = s.scalars(
                select(Article)
                .join(Ticket)
                .where(Ticket.number == "2026-000123")
                .order_by(Article.id)
            ).all()
            oof_articles = s.scalars(
                select(Article).join(Ticket).where(Ticket.number == "2026-000126")
            ).all()

        # the Outlook reply found ticket 2026-000123 by its subject tag alone
        assert sorted(outcomes) == [
            "auto_reply",
            "follow_up",
            "new_ticket",
            "pec_receipt_unmatched",
        ]
        [reply] = reply_articles
        assert "il modello è una Kyocera TASKalfa 3253ci" in reply.body_text
        assert "lasciando invariato" not in reply.body_text
        copies = [m["Subject"] for m in sink.to("operatori@consorzio.example")]
        assert sum("[Ticket#2026-000123]" in c for c in copies) == 1

        # the out-of-office: kept on its ticket, status untouched, nobody answered
        [oof] = oof_articles
        assert oof.internal
        assert by_number["2026-000126"].status == "in_carico"
        assert sink.to(OOF_SENDER) == []

        # the PEC envelope: a ticket for the person who wrote, acknowledged to her
        [pec_ticket] = [t for n, t in by_number.items() if n not in ("2026-000123", "2026-000126")]
        assert pec_ticket.requester_email == REQUESTER
        assert pec_ticket.origin_message_id == "<pec-e2e@comune.vaiano-cremasco.cr.it>"
        [ack] = sink.to(REQUESTER)
        assert ack["Subject"].startswith(f"[Ticket#{pec_ticket.number}]")
        assert ack["In-Reply-To"] == "<pec-e2e@comune.vaiano-cremasco.cr.it>"
        assert not any(r.startswith("posta-certificata@") for _, rs, _ in sink.messages for r in rs)
        assert len(sink.messages) == 3
