"""Building test mails."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr

_counter = itertools.count(1)


def make_mail(
    sender: str = "m.rossi@comune.vaiano-cremasco.cr.it",
    subject: str = "Stampante non stampa",
    body: str = "La stampante dell'ufficio anagrafe non stampa più.\n",
    *,
    name: str = "Marta Rossi",
    to: str = "supporto@consorzio.example",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    headers: dict[str, str] | None = None,
    date: datetime | None = None,
    attachments: list[tuple[str, str, bytes]] = (),
) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = formataddr((name, sender)) if name else sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime(2026, 3, 10, 9, 0, tzinfo=UTC))
    msg["Message-ID"] = message_id or f"<test.{next(_counter)}.{id(msg)}@comune.example>"
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content(body)
    for filename, ctype, data in attachments:
        main, _, sub = ctype.partition("/")
        msg.add_attachment(data, maintype=main, subtype=sub, filename=filename)
    return msg.as_bytes()
