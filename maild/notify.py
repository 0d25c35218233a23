"""Outgoing mail: rendered from Jinja2 templates and queued in the outbox table.

Each notification is three templates under `templates/<lang>/`: `<name>.subject.j2`,
`<name>.txt.j2` and `<name>.html.j2` (autoescaped). The ticket tag is added to the subject
by code, so no template can forget it. Queuing happens inside the caller's transaction:
the mail exists if and only if the change that caused it was committed.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import sys
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from sqlalchemy.orm import Session

from maild.batch import OUTBOX, batch_of
from maild.config import Config
from maild.models import Ticket


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

    def build_bytes(self, out: Outgoing, now: datetime) -> tuple[str, bytes]:
        """The wire form of `out` (CRLF, 7-bit clean) and its Message-ID.

        Written directly rather than through EmailMessage: the stdlib's header registry
        and generator took most of the time of ingesting a message.
        """
        svc = self.cfg.service
        display = f"{out.from_name} - {svc.name}" if out.from_name else svc.name
        subject = out.subject
        if out.ticket is not None and self.tag(out.ticket) not in subject:
            subject = f"{self.tag(out.ticket)} {subject}"
        message_id = self.new_message_id(out.kind, out.ticket)
        head: list[tuple[str, str]] = [
            ("From", _address(display, svc.address)),
            ("To", ", ".join(out.to)),
        ]
        if out.cc:
            head.append(("Cc", ", ".join(out.cc)))
        head += [
            ("Subject", _encode_header(subject)),
            ("Date", format_datetime(now.astimezone(svc.tz))),
            ("Message-ID", message_id),
        ]
        if out.in_reply_to:
            head.append(("In-Reply-To", out.in_reply_to))
        refs = [r for r in out.references if r]
        if refs:
            head.append(("References", " ".join(dict.fromkeys(refs))))
        head.append(("Reply-To", svc.address))
        if out.auto_submitted:
            head.append(("Auto-Submitted", out.auto_submitted))
            # ask Exchange not to answer our automatic mail with out-of-office replies
            head.append(("X-Auto-Response-Suppress", "All"))
        head += [("X-Loop", svc.address), ("X-Maild-Kind", out.kind)]
        if out.ticket is not None:
            head.append(("X-Maild-Ticket", out.ticket.number))
        head.append(("MIME-Version", "1.0"))

        body = _text_part("plain", out.text)
        if out.html:
            body = _multipart("alternative", [body, _text_part("html", out.html)])
        if out.attachments:
            body = _multipart(
                "mixed", [body, *(_attachment(n, t, d) for n, t, d in out.attachments)]
            )
        # no CR or LF from mail content may start a header of its own
        lines = [_fold(f"{name}: {' '.join(value.split())}") for name, value in head]
        return message_id, ("\r\n".join(lines) + "\r\n").encode("utf-8") + body

    def build(self, out: Outgoing, now: datetime) -> tuple[str, EmailMessage]:
        """As build_bytes, parsed back into an EmailMessage (for inspection)."""
        message_id, data = self.build_bytes(out, now)
        return message_id, message_from_bytes(data, policy=SMTP)

    def enqueue(self, session: Session, out: Outgoing, now: datetime) -> str:
        """Queue `out` in the caller's transaction; returns its Message-ID."""
        message_id, data = self.build_bytes(out, now)
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
                "data": data,
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


# -- wire format ----------------------------------------------------------------------------


def _encode_header(value: str) -> str:
    """Runs of non-ASCII words as RFC 2047 encoded words (base64, UTF-8); ASCII words,
    like the ticket tag, stay readable."""
    value = " ".join(value.split())
    if value.isascii() and "=?" not in value:
        return value
    out: list[str] = []
    run: list[str] = []
    for word in value.split(" "):
        if word.isascii() and "=?" not in word:
            if run:
                out.append(_encoded_words(" ".join(run)))
                run = []
            out.append(word)
        else:
            run.append(word)
    if run:
        out.append(_encoded_words(" ".join(run)))
    return " ".join(out)


def _encoded_words(text: str) -> str:
    words, chunk, size = [], [], 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        if size + n > 45:  # 45 bytes -> 60 base64 chars: each word fits in 75 columns
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(ch)
        size += n
    words.append("".join(chunk))
    return " ".join(
        "=?utf-8?b?" + base64.b64encode(w.encode("utf-8")).decode("ascii") + "?=" for w in words
    )


_SPECIALS = set('()<>[]:;@\\,."')


def _address(name: str, address: str) -> str:
    name = " ".join(name.split())
    if not name:
        return address
    if not name.isascii():
        return f"{_encode_header(name)} <{address}>"
    if any(c in _SPECIALS for c in name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{address}>"


def _fold(line: str, width: int = 78) -> str:
    """Fold a header line at spaces so no line is longer than `width` where possible."""
    if len(line) <= width:
        return line
    out, cur = [], ""
    for word in line.split(" "):
        if cur and len(cur) + 1 + len(word) > width:
            out.append(cur)
            cur = " " + word
        else:
            cur = f"{cur} {word}" if cur else word
    out.append(cur)
    return "\r\n".join(out)


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _text_part(subtype: str, text: str) -> bytes:
    data = text.encode("utf-8")
    if data.isascii() and all(len(x) <= 998 for x in data.splitlines()):
        cte, payload = "7bit", _crlf(data)
    else:
        payload = _crlf(binascii.b2a_qp(data.replace(b"\r\n", b"\n"), istext=True))
        cte = "quoted-printable"
    if not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    head = (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'
    )
    return head.encode("ascii") + payload


def _attachment(filename: str, ctype: str, data: bytes) -> bytes:
    maintype, _, subtype = ctype.partition("/")
    if (maintype, subtype) == ("message", "rfc822"):
        maintype, subtype = "application", "octet-stream"  # kept as a .eml file
    ctype = f"{maintype or 'application'}/{subtype or 'octet-stream'}"
    if filename.isascii() and '"' not in filename and "\\" not in filename:
        disp = f'attachment; filename="{filename}"'
    else:  # RFC 2231
        disp = f"attachment; filename*=utf-8''{quote(filename, safe='')}"
    head = (
        f"Content-Type: {ctype}\r\nContent-Transfer-Encoding: base64\r\n"
        f"{_fold('Content-Disposition: ' + disp)}\r\n\r\n"
    )
    return head.encode("ascii") + base64.encodebytes(data).replace(b"\n", b"\r\n")


def _multipart(subtype: str, parts: list[bytes]) -> bytes:
    while True:
        boundary = f"=_maild_{secrets.token_hex(12)}"
        marker = boundary.encode("ascii")
        if not any(marker in p for p in parts):
            break
    out = [f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode()]
    for p in parts:
        out += [b"--", marker, b"\r\n", p]
        if not p.endswith(b"\r\n"):
            out.append(b"\r\n")
    out += [b"--", marker, b"--\r\n"]
    return b"".join(out)
