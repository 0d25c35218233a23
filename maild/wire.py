"""The wire form of maild's mail: CRLF, 7-bit clean, written directly.

Written rather than built with EmailMessage: the stdlib's header registry and generator
took most of the time of ingesting a message.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Sequence
from datetime import datetime
from email.utils import format_datetime
from urllib.parse import quote

from maild.config import ServiceConfig
from maild.subject import ticket_tag


def mail_bytes(
    svc: ServiceConfig,
    *,
    kind: str,
    message_id: str,
    date: datetime,
    to: Sequence[str],
    subject: str,
    text: str,
    html: str | None = None,
    cc: Sequence[str] = (),
    ticket_number: str | None = None,
    from_name: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    auto_submitted: str | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
) -> bytes:
    display = f"{from_name} - {svc.name}" if from_name else svc.name
    if ticket_number is not None:
        tag = ticket_tag(ticket_number, svc.tag_word)
        if tag not in subject:
            subject = f"{tag} {subject}"
    head: list[tuple[str, str]] = [
        ("From", _address(display, svc.address)),
        ("To", ", ".join(to)),
    ]
    if cc:
        head.append(("Cc", ", ".join(cc)))
    head += [
        ("Subject", _encode_header(subject)),
        ("Date", format_datetime(date.astimezone(svc.tz))),
        ("Message-ID", message_id),
    ]
    if in_reply_to:
        head.append(("In-Reply-To", in_reply_to))
    refs = [r for r in references if r]
    if refs:
        head.append(("References", " ".join(dict.fromkeys(refs))))
    head.append(("Reply-To", svc.address))
    if auto_submitted:
        head.append(("Auto-Submitted", auto_submitted))
        # ask Exchange not to answer our automatic mail with out-of-office replies
        head.append(("X-Auto-Response-Suppress", "All"))
    head += [("X-Loop", svc.address), ("X-Maild-Kind", kind)]
    if ticket_number is not None:
        head.append(("X-Maild-Ticket", ticket_number))
    head.append(("MIME-Version", "1.0"))

    body = _text_part("plain", text)
    if html:
        body = _multipart("alternative", [body, _text_part("html", html)])
    if attachments:
        body = _multipart("mixed", [body, *(_attachment(n, t, d) for n, t, d in attachments)])
    # no CR or LF from mail content may start a header of its own
    lines = [_fold(f"{name}: {' '.join(value.split())}") for name, value in head]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8") + body


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
