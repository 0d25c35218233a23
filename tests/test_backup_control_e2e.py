"""End to end: a failure report in the backup mailbox (real Dovecot) becomes an incident and
one mail to the operators (real aiosmtpd); the backup software hears nothing."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from maild.models import Ticket

from .conftest import make_config
from .test_backup_control import JOBS, OPERATORS, report
from .test_e2e_imap import outbox_statuses, running, wait_until


async def test_failure_report_in_the_backup_mailbox(imap, smtp, state_dir):
    sink, port = smtp
    cfg = make_config(state_dir, imap=imap, smtp_port=port, backup_job=JOBS)
    support = cfg.mailbox[0]
    backup = support.model_copy(update={"name": "backup", "username": "backup"})
    cfg = cfg.model_copy(update={"mailbox": [support, backup]})
    imap.append(report("veeam-m365-failure.eml"), user="backup")

    async with running(cfg) as daemon:
        [mail] = await asyncio.to_thread(sink.wait_for, 1)
        await wait_until(lambda: imap.count("maild/processed", user="backup") == 1)
        await wait_until(lambda: outbox_statuses(daemon.runtime.db) == {"sent"})
        with daemon.runtime.db.session() as s:
            [ticket] = s.scalars(select(Ticket)).all()
    assert imap.count("INBOX", user="backup") == 0
    assert ticket.kind == "incidente" and ticket.priority == "ALTA"
    assert ticket.ente == "Comune di Vaiano Cremasco"
    assert [rcpts for _, rcpts, _ in sink.messages] == [[OPERATORS]]
    assert sink.to("vb365@consorzio-it.cr.it") == []
    assert mail["Subject"].startswith(f"[Ticket#{ticket.number}] Nuovo incidente")
    assert mail["X-Maild-Kind"] == "backup_incident"
    assert [p.get_filename() for p in mail.iter_attachments()] == ["report-originale.eml"]
