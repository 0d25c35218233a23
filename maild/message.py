"""The parsed form of one inbound e-mail, as every stage after parsing sees it.

`maild.parse.parse_message(raw)` builds it; classifiers and handlers only read it.
"""

from __future__ import annotations

import email.message
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(slots=True)
class Address:
    name: str  # decoded display name, "" when absent
    email: str  # bare address, lower-cased


@dataclass(slots=True)
class Attachment:
    filename: str  # safe file name (no path separators), never empty
    content_type: str  # e.g. "application/pdf"
    data: bytes  # decoded content
    content_id: str | None = None  # without angle brackets, for cid: links
    inline: bool = False  # Content-Disposition inline with a Content-ID (embedded image)
    sha256: str | None = None  # set once stored under state_dir (maild.blobs)
    size: int | None = None  # len(data), kept when the data is dropped (see lighten)

    @property
    def length(self) -> int:
        return self.size if self.size is not None else len(self.data)


@dataclass(slots=True)
class ParsedMessage:
    raw: bytes  # the message exactly as received
    message_id: str | None  # "<id@host>" with angle brackets, None when missing
    in_reply_to: list[str]  # message ids with angle brackets
    references: list[str]  # message ids with angle brackets, oldest first
    sender: Address  # From (first address)
    to: list[Address]
    cc: list[Address]
    reply_to: list[Address]
    subject: str  # RFC 2047 decoded, unfolded, stripped; "" when missing
    date: datetime | None  # timezone-aware, None when missing or unparsable
    text: str  # the text/plain body, else text converted from the HTML body
    html: str | None  # sanitised HTML body (nh3) when the message has one
    body_content_type: str  # "text/plain" or "text/html": which body `text` comes from
    attachments: list[Attachment] = field(default_factory=list)
    # stdlib view of the message (compat32 policy) for the classifiers' facts (maild.facts);
    # None once lightened
    email: email.message.Message | None = None
    # header values as the stdlib gives them, by lower-case name
    headers: dict[str, list] = field(default_factory=dict)
    # facts read from `email` (maild.facts), kept when the message is lightened
    memo: dict[str, object] = field(default_factory=dict)

    def header(self, name: str, default: str = "") -> str:
        """A decoded header value ("" when absent)."""
        from maild.parse import decode_header_value

        values = self.headers.get(name.lower())
        return decode_header_value(values[0]) if values else default

    def header_all(self, name: str) -> list[str]:
        from maild.parse import decode_header_value

        return [decode_header_value(v) for v in self.headers.get(name.lower(), [])]

    def lighten(self) -> ParsedMessage:
        """This message without what classification no longer needs once its facts are
        read (the stdlib tree, attachment data already stored): cheap to hand to another
        process."""
        for att in self.attachments:
            if att.sha256 is not None and att.data:
                att.size, att.data = len(att.data), b""
        self.email = None
        return self


def headers_by_name(msg: email.message.Message) -> dict[str, list]:
    """The message's header values by lower-cased name, in order: one dict lookup where
    Message.get scans every header and lower-cases each name on every call."""
    out: dict[str, list] = {}
    for name, value in msg.items():
        out.setdefault(name.lower(), []).append(value)
    return out
