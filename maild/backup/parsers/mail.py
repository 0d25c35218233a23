"""A decoded, forward-unwrapped view of a mail that product parsers read.

Works on stdlib messages parsed with either policy (compat32 or default). Forwards are
normal input: the original report may be attached as message/rfc822 (or a .eml file) or
quoted inline after an Outlook/Thunderbird/Gmail forward header block; `report_views`
yields the inner report first, with the sender and subject of the original.
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.message
import email.utils
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

from maild.backup.parsers.htmltext import HtmlDoc, html_to_doc

# Forward/reply prefixes: Italian Outlook (I:, R:), English (Fwd:, FW:, RE:), French (TR:).
_PREFIX = re.compile(
    r"^\s*(?:(?:fwd?|fw|i|r|re|tr|aw|wg|rif|inoltro|risp)\s*(?:\[\d+\])?\s*:\s*)+", re.I
)
_FORWARD_PREFIX = re.compile(r"^\s*(?:fwd?|fw|i|r|tr|wg|inoltro)\s*:", re.I)
_REPLY_PREFIX = re.compile(r"^\s*(?:re|r|aw|rif|risp)\s*:", re.I)
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(?:risposta automatica|automatic reply|auto(?:matische)?[ -]?(?:reply|antwort)"
    r"|out of (?:the )?office|fuori ufficio|assente)\b",
    re.I,
)

# Header keys of a forward block, per mail client and language.
_FROM_KEYS = {"da", "from", "mittente", "von", "de"}
_SUBJECT_KEYS = {"oggetto", "subject", "betreff", "objet"}
_BLOCK_KEYS = _FROM_KEYS | _SUBJECT_KEYS | {
    "inviato", "sent", "data", "date", "a", "to", "cc", "ccn", "bcc", "gesendet", "an",
    "envoyé", "à", "importanza", "importance", "priorità", "allegati", "attachments",
    "rispondi a", "reply-to", "inviato il",
}  # fmt: skip
_BLOCK_LINE = re.compile(r"^\s*\*?([A-Za-zÀ-ÿ -]{1,15}?)\*?\s*:\s*(.*)$")
_SEPARATOR = re.compile(
    r"^\s*(?:_{5,}|-{2,}\s*(?:messaggio inoltrato|forwarded message|original message|"
    r"messaggio originale|inoltrato)\s*-{2,}|-{5,}.*-{5,}|begin forwarded message:?)\s*$",
    re.I,
)
_HEADER_SCAN_LINES = 12  # a rule's forward block sits at the very top of the body


# Format characters: U+200E marks in Windows event text, zero-width spaces, bidi controls, BOM.
_FORMAT_CHARS = re.compile(
    "[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]"
)


def clean_text(text: str) -> str:
    """Normalise newlines and non-breaking spaces, drop format characters."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    return _FORMAT_CHARS.sub("", text)


def header_text(msg: email.message.Message, name: str) -> str:
    """A decoded, unfolded header value ("" when absent), whatever the message policy."""
    value = msg.get(name)
    if value is None:
        return ""
    text = str(value) if not isinstance(value, email.header.Header) else None
    if text is None or "=?" in text:
        # compat32: encoded words still encoded, raw 8-bit headers come as Header objects
        try:
            chunks = email.header.decode_header(value if text is None else text)
        except email.errors.HeaderParseError:
            chunks = [(text or "", None)]
        text = "".join(
            _decode_bytes(chunk, charset) if isinstance(chunk, bytes) else chunk
            for chunk, charset in chunks
        )
    return re.sub(r"\s+", " ", clean_text(text)).strip()


def _decode_bytes(data: bytes, charset: str | None) -> str:
    charset = (charset or "utf-8").lower()
    if charset in ("iso-8859-1", "latin-1", "latin1", "us-ascii", "ascii", "unknown-8bit"):
        charset = "utf-8" if charset == "unknown-8bit" else "windows-1252"
    try:
        return data.decode(charset)
    except (LookupError, UnicodeDecodeError):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            # Windows tools mislabel; cp1252 is a superset of latin-1 for text
            return data.decode("windows-1252", errors="replace")


def strip_prefixes(subject: str) -> str:
    return _PREFIX.sub("", subject).strip()


def decode_part(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return _decode_bytes(payload, part.get_content_charset())


def _is_attachment(part: email.message.Message) -> bool:
    disposition = str(part.get("Content-Disposition") or "").split(";")[0].strip().lower()
    return disposition == "attachment"


def _inner_message(part: email.message.Message) -> email.message.Message | None:
    """The message carried by a message/rfc822 part or an attached .eml file."""
    if part.get_content_type() == "message/rfc822":
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], email.message.Message):
            return payload[0]
        return None
    filename = (part.get_filename() or "").lower()
    if filename.endswith(".eml") and not part.is_multipart():
        data = part.get_payload(decode=True)
        if isinstance(data, bytes):
            return email.message_from_bytes(data)
    return None


@dataclass
class _Bodies:
    plain: str | None = None
    html: str | None = None
    inner: list[email.message.Message] = field(default_factory=list)


def _bodies(msg: email.message.Message) -> _Bodies:
    found = _Bodies()

    def walk(part: email.message.Message) -> None:
        inner = _inner_message(part)
        if inner is not None:
            found.inner.append(inner)
        elif part.is_multipart():
            for sub in part.get_payload():
                walk(sub)
        elif not _is_attachment(part):
            ctype = part.get_content_type()
            if ctype == "text/plain" and found.plain is None:
                found.plain = clean_text(decode_part(part))
            elif ctype == "text/html" and found.html is None:
                found.html = clean_text(decode_part(part))

    walk(msg)
    return found


@dataclass
class ReportMail:
    """What a product parser sees: the (inner) report's sender, subject and bodies."""

    subject: str  # decoded, unfolded, forward prefixes stripped
    sender_name: str
    sender_addr: str  # lower-cased
    plain: str | None  # text/plain body
    html: str | None  # text/html body
    msg: email.message.Message | None = None  # headers of the report (None: inline forward)
    forwarded: bool = False
    cut_forward_block: bool = False  # html_text: drop everything down to the forward block

    @property
    def sender(self) -> str:
        return f"{self.sender_name} <{self.sender_addr}>"

    def header(self, name: str) -> str:
        return header_text(self.msg, name) if self.msg is not None else ""

    @cached_property
    def doc(self) -> HtmlDoc | None:
        return html_to_doc(self.html) if self.html else None

    @cached_property
    def html_text(self) -> str:
        text = self.doc.text if self.doc else ""
        if self.cut_forward_block:
            block = find_forward_block(text, anywhere=True)
            return block.after if block else text
        return text

    @cached_property
    def text(self) -> str:
        """The plain body when there is one, else the HTML rendered as text."""
        return self.plain if self.plain and self.plain.strip() else self.html_text

    @cached_property
    def rows(self) -> list[list[str]]:
        """Table rows of the HTML body (else tab-separated lines of the text body)."""
        if self.doc is not None and self.doc.rows:
            return [row for row in self.doc.rows if any(row)]
        return [line.split("\t") for line in self.text.split("\n") if "\t" in line]

    @cached_property
    def fields(self) -> dict[str, str]:
        """`Key: value` pairs from two-cell table rows and from text lines (first wins)."""
        found: dict[str, str] = {}
        for row in self.rows:
            cells = [c for c in row if c]
            if len(row) == 2 and len(cells) >= 1 and len(row[0]) <= 60:
                found.setdefault(field_key(row[0]), row[1].strip())
        for text in (self.text, self.html_text):
            for line in text.split("\n"):
                m = _FIELD_LINE.match(line)
                if m:
                    found.setdefault(field_key(m.group(1)), m.group(2).strip())
        return found

    def field(self, *keys: str) -> str | None:
        """The first non-empty field among `keys` (matched case-insensitively)."""
        for key in keys:
            value = self.fields.get(field_key(key))
            if value:
                return value
        return None


_FIELD_LINE = re.compile(r"^\s*([^\t:]{1,60}?)\s*:\s*(.*?)\s*$")


def field_key(key: str) -> str:
    return re.sub(r"\s+", " ", key.strip().rstrip(":").strip()).lower()


def _parse_from(value: str) -> tuple[str, str]:
    value = re.sub(r"\[mailto:([^\]]+)\]", r"<\1>", value)  # old Outlook: Name [mailto:a@b]
    name, addr = email.utils.parseaddr(value)
    if not addr and "@" not in value:
        return value.strip().strip('"'), ""
    return name.strip(), addr.lower()


@dataclass
class _ForwardBlock:
    headers: dict[str, str]
    before: str  # text above the block (a person's comment, or nothing from a rule)
    after: str  # the original message's body


def find_forward_block(text: str, anywhere: bool) -> _ForwardBlock | None:
    """Locate an inline forward header block (Da:/Inviato:/A:/Oggetto: and friends)."""
    lines = text.split("\n")
    limit = len(lines) if anywhere else min(len(lines), _HEADER_SCAN_LINES)
    i = 0
    while i < limit:
        start = i
        if _SEPARATOR.match(lines[i]):
            i += 1
        headers: dict[str, str] = {}
        j = i
        while j < len(lines):
            line = lines[j]
            m = _BLOCK_LINE.match(line)
            key = m.group(1).strip().lower() if m else None
            if m and key in _BLOCK_KEYS:
                headers.setdefault(key, m.group(2).strip())
            elif not line.strip():
                if headers:
                    break
            else:
                break
            j += 1
        if headers.keys() & _FROM_KEYS and headers.keys() & _SUBJECT_KEYS:
            return _ForwardBlock(headers, "\n".join(lines[:start]), "\n".join(lines[j:]))
        i = start + 1
    return None


def _view(msg: email.message.Message, bodies: _Bodies) -> ReportMail:
    name, addr = _parse_from(header_text(msg, "From"))
    return ReportMail(
        subject=strip_prefixes(header_text(msg, "Subject")),
        sender_name=name,
        sender_addr=addr,
        plain=bodies.plain,
        html=bodies.html,
        msg=msg,
    )


def _inline_forward(outer: ReportMail, raw_subject: str) -> ReportMail | None:
    # A forward-prefixed subject may carry the block anywhere (a person's comment above it);
    # otherwise only a block at the very top of the body counts. The plain part is searched
    # first: rendering the HTML is the expensive step, done only when there is no plain part.
    anywhere = bool(_FORWARD_PREFIX.match(raw_subject))
    if outer.plain and outer.plain.strip():
        block = find_forward_block(outer.plain, anywhere)
    elif outer.html:
        block = find_forward_block(outer.html_text, anywhere)
    else:
        block = None
    if block is None:
        return None
    keys = block.headers
    sender = next((keys[k] for k in _FROM_KEYS if k in keys), "")
    subject = next((keys[k] for k in _SUBJECT_KEYS if k in keys), "")
    name, addr = _parse_from(sender)
    return ReportMail(
        subject=strip_prefixes(subject),
        sender_name=name,
        sender_addr=addr,
        plain=block.after if outer.plain and outer.plain.strip() else None,
        html=outer.html,
        forwarded=True,
        cut_forward_block=True,
    )


def is_auto_reply(msg: email.message.Message) -> bool:
    auto = header_text(msg, "Auto-Submitted").lower()
    if auto.startswith("auto-replied") or msg.get("X-Autoreply") or msg.get("X-Autorespond"):
        return True
    return bool(_AUTO_REPLY_SUBJECT.match(strip_prefixes(header_text(msg, "Subject"))))


def is_reply(msg: email.message.Message) -> bool:
    """A reply in a conversation (quoting a report is not sending one)."""
    threaded = bool(msg.get("In-Reply-To"))
    return threaded and bool(_REPLY_PREFIX.match(header_text(msg, "Subject")))


def report_views(msg: email.message.Message, depth: int = 0) -> Iterator[ReportMail]:
    """Candidate report views of `msg`: attached originals, inline forward, the mail itself."""
    if depth > 3 or is_auto_reply(msg) or is_reply(msg):
        return
    bodies = _bodies(msg)
    for inner in bodies.inner:
        for view in report_views(inner, depth + 1):
            view.forwarded = True
            yield view
    outer = _view(msg, bodies)
    forward = _inline_forward(outer, header_text(msg, "Subject"))
    if forward is not None:
        yield forward
    yield outer
