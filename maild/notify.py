"""Outgoing mail: rendered from Jinja2 templates and queued in the outbox table.

Each notification is three templates under `templates/<lang>/`: `<name>.subject.j2`,
`<name>.txt.j2` and `<name>.html.j2` (autoescaped). The ticket tag is added to the subject
by code, so no template can forget it. Queuing happens inside the caller's transaction:
the mail exists if and only if the change that caused it was committed.
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from maild.config import Config
from maild.models import MessageRef, OutboxMessage, Ticket


def templates_dir(cfg: Config) -> Path:
    candidates = [
        cfg.service.templates_dir,
        Path(__file__).resolve().parent.parent / "templates",  # source checkout
        Path(sys.prefix) / "share" / "maild" / "templates",  # pip install
    ]
    for c in candidates:
        if c is not None and (c / "it").is_dir():
            return c
    raise FileNotFoundError("maild templates not found; set service.templates_dir")


@dataclass
class Outgoing:
    kind: str  # ack, operator_copy, alert, ...
    to: list[str]
    subject: str
    text: str
    html: str | None = None
    ticket: Ticket | None = None
    from_name: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    auto_submitted: str | None = None  # "auto-replied" | "auto-generated"
    cc: list[str] = field(default_factory=list)
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)  # name, type, data
    rate_key: str | None = None


class Notifier:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    @cached_property
    def env(self) -> jinja2.Environment:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates_dir(self.cfg))),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",)),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        env.filters["localtime"] = self._localtime
        return env

    def _localtime(self, value: datetime | None, fmt: str = "%d/%m/%Y %H:%M") -> str:
        return "" if value is None else value.astimezone(self.cfg.service.tz).strftime(fmt)

    @property
    def domain(self) -> str:
        return self.cfg.service.address.rpartition("@")[2]

    def tag(self, ticket: Ticket) -> str:
        return f"[{self.cfg.service.tag_word}#{ticket.number}]"

    def render(self, name: str, **context: Any) -> tuple[str, str, str]:
        lang = self.cfg.service.language
        ctx = {"service": self.cfg.service, **context}

        def one(suffix: str) -> str:
            return self.env.get_template(f"{lang}/{name}.{suffix}.j2").render(ctx)

        return " ".join(one("subject").split()), one("txt"), one("html")

    def new_message_id(self, kind: str, ticket: Ticket | None) -> str:
        ref = ticket.number if ticket is not None else "service"
        return f"<maild.{ref}.{kind}.{secrets.token_hex(6)}@{self.domain}>"

    def build(self, out: Outgoing, now: datetime) -> tuple[str, EmailMessage]:
        svc = self.cfg.service
        msg = EmailMessage(policy=SMTP)
        display = f"{out.from_name} - {svc.name}" if out.from_name else svc.name
        msg["From"] = formataddr((display, svc.address))
        msg["To"] = ", ".join(out.to)
        if out.cc:
            msg["Cc"] = ", ".join(out.cc)
        subject = out.subject
        if out.ticket is not None and self.tag(out.ticket) not in subject:
            subject = f"{self.tag(out.ticket)} {subject}"
        msg["Subject"] = subject
        msg["Date"] = format_datetime(now.astimezone(svc.tz))
        message_id = self.new_message_id(out.kind, out.ticket)
        msg["Message-ID"] = message_id
        if out.in_reply_to:
            msg["In-Reply-To"] = out.in_reply_to
        refs = [r for r in out.references if r]
        if refs:
            msg["References"] = " ".join(dict.fromkeys(refs))
        msg["Reply-To"] = svc.address
        if out.auto_submitted:
            msg["Auto-Submitted"] = out.auto_submitted
            # ask Exchange not to answer our automatic mail with out-of-office replies
            msg["X-Auto-Response-Suppress"] = "All"
        msg["X-Loop"] = svc.address
        msg["X-Maild-Kind"] = out.kind
        if out.ticket is not None:
            msg["X-Maild-Ticket"] = out.ticket.number
        msg.set_content(out.text)
        if out.html:
            msg.add_alternative(out.html, subtype="html")
        for filename, ctype, data in out.attachments:
            maintype, _, subtype = ctype.partition("/")
            if maintype == "message" and subtype == "rfc822":
                # stdlib wants a Message for rfc822 parts; keep the bytes as a .eml file
                maintype, subtype = "application", "octet-stream"
            msg.add_attachment(
                data,
                maintype=maintype or "application",
                subtype=subtype or "octet-stream",
                filename=filename,
            )
        return message_id, msg

    def enqueue(self, session: Session, out: Outgoing, now: datetime) -> OutboxMessage:
        message_id, msg = self.build(out, now)
        recipients = list(dict.fromkeys([*out.to, *out.cc]))
        row = OutboxMessage(
            ticket_id=out.ticket.id if out.ticket is not None else None,
            kind=out.kind,
            message_id=message_id,
            envelope_from=self.cfg.service.address,
            recipients=recipients,
            rate_key=out.rate_key,
            data=msg.as_bytes(),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        session.add(row)
        if out.ticket is not None:
            # replies to this mail thread onto the ticket
            session.add(MessageRef(message_id=message_id, ticket_id=out.ticket.id))
        return row

    def recent_count(self, session: Session, kind: str, rate_key: str, since: datetime) -> int:
        return session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(
                OutboxMessage.kind == kind,
                OutboxMessage.rate_key == rate_key,
                OutboxMessage.created_at >= since,
            )
        )
