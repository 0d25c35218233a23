"""Outgoing mail: rendered from Jinja2 templates and queued in the outbox table.

Each notification is three templates under `templates/<lang>/`: `<name>.subject.j2`,
`<name>.txt.j2` and `<name>.html.j2` (autoescaped). The ticket tag is added to the subject
by code, so no template can forget it. Queuing happens inside the caller's transaction:
the mail exists if and only if the change that caused it was committed. The outbox holds
each mail's draft (maild.draft); the sender composes its bytes when it sends it.
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
from sqlalchemy.orm import Session

from maild import draft as drafts
from maild.batch import OUTBOX, batch_of
from maild.blobs import BlobStore
from maild.config import Config
from maild.log import get_logger
from maild.models import OutboxMessage, Ticket
from maild.wire import mail_bytes

log = get_logger("maild.notify")


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


# the outbox sends lower numbers first: in a backlog the requesters' acknowledgements
# (the contract's "within seconds") go before operators' copies, digests and alerts
URGENT_KINDS = frozenset({"ack", "too_large", "status_request"})
URGENT, NORMAL = 0, 5


def priority_of(kind: str) -> int:
    return URGENT if kind in URGENT_KINDS else NORMAL


@dataclass
class Outgoing:
    """One mail to queue: either written (subject, text, html) or to be rendered from
    `template` with `context` when it is sent (see maild.draft)."""

    kind: str  # ack, operator_copy, alert, ...
    to: list[str]
    subject: str = ""
    text: str = ""
    html: str | None = None
    ticket: Ticket | None = None
    from_name: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    auto_submitted: str | None = None  # "auto-replied" | "auto-generated"
    cc: list[str] = field(default_factory=list)
    # name, type, and the content or the sha256 of a blob already stored under state_dir
    attachments: list[tuple[str, str, bytes | str]] = field(default_factory=list)
    rate_key: str | None = None
    template: str | None = None
    context: dict[str, Any] = field(default_factory=dict)


class Notifier:
    def __init__(self, cfg: Config, blobs: BlobStore | None = None) -> None:
        self.cfg = cfg
        self.blobs = blobs or BlobStore(cfg.service.state_dir / "blobs")

    @cached_property
    def env(self) -> jinja2.Environment:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates_dir(self.cfg))),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",)),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            # no stat() per render: a reload (SIGHUP) starts over with fresh templates
            auto_reload=False,
        )
        env.filters["localtime"] = self._localtime
        return env

    def warm(self) -> dict[str, str]:
        """Compile every template of the configured language now, not at the first mail
        (the sender does this while starting). Returns the broken ones with their errors,
        each logged: a broken template fails only the mails that use it (they are kept,
        dead, with the error), never the sender."""
        lang = self.cfg.service.language
        broken: dict[str, str] = {}
        for name in self.env.list_templates(filter_func=lambda n: n.startswith(f"{lang}/")):
            try:
                self.env.get_template(name)
            except jinja2.TemplateError as e:
                where = f" line {e.lineno}" if isinstance(e, jinja2.TemplateSyntaxError) else ""
                broken[name] = f"{type(e).__name__}{where}: {e}"
                log.error("template_broken", template=name, error=broken[name])
        return broken

    def _localtime(self, value: datetime | None, fmt: str = "%d/%m/%Y %H:%M") -> str:
        return "" if value is None else value.astimezone(self.cfg.service.tz).strftime(fmt)

    @property
    def domain(self) -> str:
        return self.cfg.service.address.rpartition("@")[2]

    def render(self, name: str, **context: Any) -> tuple[str, str, str]:
        lang = self.cfg.service.language
        ctx = {"service": self.cfg.service, **context}

        def one(suffix: str) -> str:
            return self.env.get_template(f"{lang}/{name}.{suffix}.j2").render(ctx)

        return " ".join(one("subject").split()), one("txt"), one("html")

    def new_message_id(self, kind: str, ticket: Ticket | None) -> str:
        ref = ticket.number if ticket is not None else "service"
        return f"<maild.{ref}.{kind}.{secrets.token_hex(6)}@{self.domain}>"

    # -- queue and compose ----------------------------------------------------------------

    def draft(self, out: Outgoing, now: datetime) -> dict[str, Any]:
        """What the sender needs to write `out` (attachments stored as blobs)."""
        return {
            "kind": out.kind,
            "date": now,
            "to": out.to,
            "cc": out.cc,
            "subject": out.subject,
            "text": out.text,
            "html": out.html,
            "template": out.template,
            "context": out.context,
            "ticket": out.ticket.number if out.ticket is not None else None,
            "from_name": out.from_name,
            "in_reply_to": out.in_reply_to,
            "references": out.references,
            "auto_submitted": out.auto_submitted,
            "attachments": [
                (name, ctype, content if isinstance(content, str) else self.blobs.put(content))
                for name, ctype, content in out.attachments
            ],
        }

    def compose(self, draft: dict[str, Any], message_id: str) -> bytes:
        """The wire form of a queued mail: its template rendered now, if it has one."""
        subject, text, html = draft["subject"], draft["text"], draft["html"]
        if draft["template"]:
            subject, text, html = self.render(draft["template"], **draft["context"])
        return mail_bytes(
            self.cfg.service,
            kind=draft["kind"],
            message_id=message_id,
            date=draft["date"],
            to=draft["to"],
            cc=draft["cc"],
            subject=subject,
            text=text,
            html=html,
            ticket_number=draft["ticket"],
            from_name=draft["from_name"],
            in_reply_to=draft["in_reply_to"],
            references=draft["references"],
            auto_submitted=draft["auto_submitted"],
            attachments=[(n, t, self.blobs.get(sha)) for n, t, sha in draft["attachments"]],
        )

    def wire(self, row: OutboxMessage | Any) -> bytes:
        """The bytes of an outbox row (or of maild.outbox.Mail): as stored, else composed
        from its draft."""
        if row.data is not None:
            return row.data
        return self.compose(drafts.loads(row.draft), row.message_id)

    def enqueue(self, session: Session, out: Outgoing, now: datetime) -> str:
        """Queue `out` in the caller's transaction; returns its Message-ID."""
        message_id = self.new_message_id(out.kind, out.ticket)
        recipients = list(dict.fromkeys([*out.to, *out.cc]))
        ticket = None if out.ticket is None else out.ticket.id or out.ticket
        batch = batch_of(session)
        batch.add(
            OUTBOX,
            {
                "ticket_id": ticket,
                "kind": out.kind,
                "priority": priority_of(out.kind),
                "message_id": message_id,
                "envelope_from": self.cfg.service.address,
                "recipients": recipients,
                "rate_key": out.rate_key,
                "data": None,
                "draft": drafts.dumps(self.draft(out, now)),
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "claimed_at": None,
                "last_error": None,
                "created_at": now,
                "sent_at": None,
            },
        )
        batch.queued(out.kind, out.rate_key)
        if ticket is not None:
            batch.remember(message_id, ticket)  # replies to this mail thread onto the ticket
        return message_id

    def recent_count(self, session: Session, kind: str, rate_key: str, since: datetime) -> int:
        """Mail of `kind` queued for `rate_key` since `since` (this transaction's included)."""
        return batch_of(session).recent(session, kind, rate_key, since)
