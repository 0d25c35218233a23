"""Raw inbound bytes -> ParsedMessage, for every mail a comune's users can send.

The message is parsed once with the stdlib (compat32, the policy mail-parser uses too and
the one `ParsedMessage.email` promises). mail-parser's own body/attachment split is not
used: it merges the text of attached messages into the body, names unnamed parts with
random strings, re-encodes attachment data as base64 text and costs a second full pass.
From mail-parser we use its forgiving date parser as a fallback. Everything charset
related is done here, because real mail lies about charsets all the time.
"""

from __future__ import annotations

import binascii
import codecs
import email
import email.errors
import email.header
import email.parser
import email.utils
import hashlib
import mimetypes
import quopri
import re
import unicodedata
from datetime import UTC, datetime
from email.message import Message
from functools import lru_cache
from html import escape as html_escape

from mailparser.dates import parse_mail_date

from maild.html import html_to_text, sanitize_html
from maild.message import Address, Attachment, ParsedMessage, headers_by_name
from maild.tnef import extract_tnef


class NotAMessage(ValueError):
    """The input is not an e-mail at all (empty, binary, no header section)."""


# ---------------------------------------------------------------------------------------------
# Charsets

# Labels that lie or that Python spells differently. The "superset" aliases follow the
# WHATWG encoding standard, which is what every mail client and browser really does.
_CHARSET_ALIASES = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "euc-cn": "gb18030",
    "x-euc-cn": "gb18030", "cp936": "gb18030", "csgb2312": "gb18030", "gb_2312-80": "gb18030",
    "chinese": "gb18030",
    "big5": "big5hkscs", "x-big5": "big5hkscs",
    "ks_c_5601-1987": "cp949", "ks_c_5601": "cp949", "ksc5601": "cp949", "euc-kr": "cp949",
    "korean": "cp949", "x-windows-949": "cp949",
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932",
    "ms_kanji": "cp932", "windows-31j": "cp932", "csshiftjis": "cp932",
    "iso-2022-jp": "iso2022_jp_ext", "csiso2022jp": "iso2022_jp_ext",
    "iso-8859-1": "cp1252", "iso8859-1": "cp1252", "iso_8859-1": "cp1252", "latin1": "cp1252",
    "latin-1": "cp1252", "l1": "cp1252", "cp819": "cp1252", "ibm819": "cp1252",
    "iso-8859-9": "cp1254", "latin5": "cp1254", "iso-8859-11": "cp874", "tis-620": "cp874",
    "iso-8859-8-i": "iso-8859-8",
    "unicode-1-1-utf-7": "utf-7", "utf7": "utf-7", "x-utf-7": "utf-7",
    "utf8": "utf-8", "x-unicode20utf8": "utf-8",
    "ansi_x3.4-1968": "ascii", "us-ascii": "ascii", "iso646-us": "ascii",
}  # fmt: skip
# Labels that carry no information: decode as undeclared 8-bit.
_NO_CHARSET = {"", "ascii", "unknown", "unknown-8bit", "x-unknown", "default", "none", "8bit"}
# Single-byte charsets whose label is often wrong for UTF-8 content (web forms, scripts).
_SINGLE_BYTE_PREFIXES = ("cp125", "iso-8859-", "iso8859", "windows-125", "latin")
# ISO-2022-JP as Microsoft writes it (CP50220: NEC and IBM extensions such as ①), which
# Python's iso2022 codecs reject; see _jis_via_cp932.
_JIS_VIA_CP932 = "x-iso-2022-jp-via-cp932"
# Fallbacks when the declared codec cannot decode the bytes.
_FALLBACK_CODECS = {"iso2022_jp_ext": ("iso2022_jp_2004", _JIS_VIA_CP932)}
_JIS_ESCAPE = re.compile(rb"(\x1b(?:\$[@B]|\$\([@BDQO]|\([BJI]))")


def _jis_via_cp932(data: bytes) -> str:
    """ISO-2022-JP -> Shift_JIS by arithmetic, then cp932 (a superset of every JIS variant).

    Raw Shift_JIS bytes under an ISO-2022-JP label (a common mislabel) pass through as is.
    """
    out = bytearray()
    mode = b"ascii"
    for chunk in _JIS_ESCAPE.split(data):
        if chunk.startswith(b"\x1b"):
            mode = b"kana" if chunk == b"\x1b(I" else b"ascii" if chunk[1:2] == b"(" else b"jis"
            continue
        if mode == b"kana":
            out += bytes(b | 0x80 if 0x21 <= b <= 0x5F else b for b in chunk)
            continue
        if mode == b"ascii":
            out += chunk
            continue
        index = 0
        while index < len(chunk):
            j1 = chunk[index]
            j2 = chunk[index + 1] if index + 1 < len(chunk) else 0
            if 0x21 <= j1 <= 0x7E and 0x21 <= j2 <= 0x7E:
                s1 = (j1 + 1) // 2 + 0x70
                s1 += 0x40 if s1 >= 0xA0 else 0
                if j1 % 2:
                    s2 = j2 + 0x1F + (1 if j2 + 0x1F >= 0x7F else 0)
                else:
                    s2 = j2 + 0x7E
                out += bytes((s1, s2))
                index += 2
            else:
                out.append(j1)
                index += 1
    return bytes(out).decode("cp932", "replace")


@lru_cache(maxsize=256)
def _codec(label: str | None) -> str | None:
    """Python codec name for a charset label; None for unknown or meaningless labels."""
    if not label:
        return None
    label = label.strip().strip("\"'").strip().lower()
    label = _CHARSET_ALIASES.get(label, label)
    if label in _NO_CHARSET or not label.isascii() or len(label) > 40:
        return None
    for candidate in (label, label.replace("windows-", "cp"), label.replace("_", "-")):
        try:
            return codecs.lookup(candidate).name
        except (LookupError, ValueError):
            continue
    return None


def _is_single_byte(codec: str) -> bool:
    return codec.startswith(_SINGLE_BYTE_PREFIXES)


def decode_bytes(data: bytes, charset: str | None = None, hint: str | None = None) -> str:
    """Text of `data`: the declared charset when it works, else UTF-8, the hint, windows-1252."""
    codec = _codec(charset)
    if codec is None:
        guess = _codec(hint)
        candidates: tuple[str | None, ...] = (
            "utf-8", guess, *_FALLBACK_CODECS.get(guess or "", ()), "cp1252",
        )  # fmt: skip
    elif _is_single_byte(codec) and not data.isascii():
        # A single-byte label on valid multi-byte UTF-8 is a mislabel (PHP forms do it).
        candidates = ("utf-8", codec, *_FALLBACK_CODECS.get(codec, ()), "cp1252")
    else:
        candidates = (codec, *_FALLBACK_CODECS.get(codec, ()), "utf-8", "cp1252")
    for candidate in candidates:
        if candidate is None:
            continue
        if candidate == _JIS_VIA_CP932:
            return _jis_via_cp932(data)  # never fails: the last resort for this family
        try:
            return data.decode(candidate)
        except (UnicodeDecodeError, LookupError):
            continue
    return data.decode(codec or "utf-8", "replace")


def _surrogates_to_text(value: str, hint: str | None = None) -> str:
    """Undo surrogateescape (undeclared 8-bit header bytes) with a charset guess."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
        return value  # real text, no escaped bytes
    except UnicodeEncodeError:
        return decode_bytes(value.encode("utf-8", "surrogateescape"), None, hint)


# ---------------------------------------------------------------------------------------------
# Headers

_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?]*)?\?([bBqQ])\?([^?]*)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_Q_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")


def _decode_q(text: str) -> bytes:
    data = text.replace("_", " ").encode("utf-8", "surrogateescape")
    return _Q_HEX.sub(lambda m: bytes([int(m.group(1), 16)]), data)


def _decode_b(text: str) -> bytes:
    data = re.sub(r"[^A-Za-z0-9+/]", "", text)  # padding errors are common: re-pad ourselves
    data = data[: len(data) - len(data) % 4 if len(data) % 4 == 1 else len(data)]
    try:
        return binascii.a2b_base64(data + "=" * (-len(data) % 4))
    except binascii.Error:
        return b""


def _header_to_str(value: email.header.Header) -> str:
    # compat32 hands out Header objects for values with raw 8-bit bytes; get the bytes back.
    parts = []
    for data, charset in email.header.decode_header(value):
        if isinstance(data, str):
            parts.append(data)
        elif charset in (None, "unknown-8bit"):
            parts.append(data.decode("ascii", "surrogateescape"))
        else:
            parts.append(decode_bytes(data, charset))
    return "".join(parts)


def decode_header_value(value: str | email.header.Header | None, hint: str | None = None) -> str:
    """RFC 2047 decoding that survives real mail.

    Handles folding, adjacent encoded words split in the middle of a character, mixed
    charsets in one header, lying labels (GB2312 that is GBK, ISO-8859-1 that is
    windows-1252), UTF-7, bad base64 padding, and raw 8-bit bytes (UTF-8, else `hint`,
    else windows-1252). Never raises.
    """
    if value is None:
        return ""
    if isinstance(value, email.header.Header):
        value = _header_to_str(value)
    elif not isinstance(value, str):
        value = str(value)
    value = _FOLD.sub("", value)
    if "=?" not in value:
        return _CONTROL.sub("", _surrogates_to_text(value, hint))

    out: list[str] = []
    pending: list[bytes] = []  # bytes of adjacent encoded words with the same charset
    pending_charset: str | None = None
    position = 0

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending:
            out.append(decode_bytes(b"".join(pending), pending_charset, hint))
        pending, pending_charset = [], None

    for match in _ENCODED_WORD.finditer(value):
        literal = value[position : match.start()]
        position = match.end()
        if literal and not (literal.isspace() and pending):  # space between encoded words
            flush()
            out.append(_surrogates_to_text(literal, hint))
        charset, encoding, text = match.groups()
        data = _decode_b(text) if encoding in "bB" else _decode_q(text)
        if pending and _codec(charset) != _codec(pending_charset):
            flush()
        pending_charset = charset
        pending.append(data)
    flush()
    out.append(_surrogates_to_text(value[position:], hint))
    return _CONTROL.sub("", "".join(out))


_MSGID = re.compile(r"<([^<>]+)>")


def _message_ids(value: str) -> list[str]:
    ids = ["<" + re.sub(r"\s+", "", found) + ">" for found in _MSGID.findall(value)]
    if not ids:  # ids written without angle brackets
        ids = [f"<{token}>" for token in re.split(r"[\s,;]+", value) if "@" in token]
        if not ids and value.strip() and len(value.split()) == 1:
            ids = [f"<{value.strip()}>"]
    # ids are keys in the database (998 = RFC 5322's line limit): cut the absurd ones the
    # same way everywhere, so a reply still matches what its original was stored under
    return [i[:997] + ">" if len(i) > 998 else i for i in dict.fromkeys(ids) if i != "<>"]


# An encoded word may contain "," or "<" (bad encoders do it), which confuses getaddresses:
# swap each for an inert atom first and put it back afterwards.
_PLACEHOLDER = "MAILDEW{}X"
_PLACEHOLDER_RE = re.compile(r"MAILDEW(\d+)X")


def _addresses(values: list[str], hint: str | None) -> list[Address]:
    words: list[str] = []

    def protect(match: re.Match[str]) -> str:
        words.append(match.group(0))
        return _PLACEHOLDER.format(len(words) - 1)

    def restore(text: str) -> str:
        return _PLACEHOLDER_RE.sub(lambda m: words[int(m.group(1))], text) if words else text

    values = [_ENCODED_WORD.sub(protect, _FOLD.sub("", v)) for v in values]
    result = []
    for name, addr in email.utils.getaddresses(values):
        addr = _surrogates_to_text(restore(addr), hint).strip().strip("<>").strip().lower()
        name = decode_header_value(restore(name), hint).strip()
        if addr:
            result.append(Address(name=name, email=addr))
    return result


def _sender(headers: dict[str, list[str]], hint: str | None) -> Address:
    """From, else the next best header; a full address beats a bare local part."""
    fallback = None
    for name in ("from", "sender", "reply-to", "return-path"):
        for value in headers.get(name, [])[:3]:
            found = _addresses([value], hint)
            if found and "@" in found[0].email:
                return found[0]
            fallback = fallback or (found[0] if found else None)
    return fallback or Address("", "")


_DATE_PREFIX = re.compile(
    r"\s*(?:[A-Za-z]{3},?\s*)?\d{1,2}\s+[A-Za-z]{3}\s+\d{2,4}\s+\d{1,2}:\d{2}(?::\d{2})?"
    r"(?:\s*[+-]\d{4}|\s+[A-Za-z]{1,5}\b)?"
)


def _parse_date(value: str | None) -> datetime | None:
    if not value or not value.strip():
        return None
    value = value.strip()
    # The well-formed prefix first: "... +0200Received: ..." (a header glued on) otherwise
    # parses with the zone ignored.
    prefix = _DATE_PREFIX.match(value)
    candidates = [prefix.group(0), value] if prefix else [value]
    for candidate in candidates:
        try:
            parsed = email.utils.parsedate_to_datetime(candidate)
        except (TypeError, ValueError, IndexError, OverflowError):
            continue
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return parse_mail_date(value).value  # mail-parser: obsolete syntax, comments; UTC


# ---------------------------------------------------------------------------------------------
# Header section repair and sanity check

_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
# At least one of these must be present for the input to count as an e-mail.
_MAIL_HEADERS = frozenset(
    "from to cc bcc subject date message-id received return-path mime-version content-type "
    "sender reply-to delivered-to x-original-to in-reply-to references resent-from x-mailer "
    "user-agent content-transfer-encoding dkim-signature authentication-results".split()
)


def _repair_header_section(raw: bytes) -> bytes | None:
    """Fold stray non-header lines into the header section, or None when nothing to fix.

    Broken generators split long values without indenting them, or put a banner line
    before the headers; the stdlib then ends the headers there and loses From/Subject.
    A stray line is folded into the previous header only when real header lines follow it
    (otherwise it is the start of a body written without the blank line).
    """
    blank = _BLANK_LINE.search(raw)
    head, rest = (raw[: blank.start()], raw[blank.start() :]) if blank else (raw, b"")
    lines = head.splitlines(keepends=True)
    header_like = [bool(_HEADER_LINE.match(line)) or line[:1] in b" \t" for line in lines]
    last_header = max((i for i, ok in enumerate(header_like) if ok), default=-1)
    fixed: list[bytes] = []
    changed = False
    for i, line in enumerate(lines):
        if header_like[i] or (i == 0 and line.startswith(b"From ")):
            fixed.append(line)
        elif i < last_header:
            changed = True
            if fixed and not (len(fixed) == 1 and fixed[0].startswith(b"From ")):
                fixed.append(b" " + line)  # continuation of the previous header
        else:
            fixed.extend(lines[i:])
            break
    return b"".join(fixed) + rest if changed else None


def _parse_bytes(raw: bytes) -> Message:
    data = raw.lstrip(b"\r\n")
    try:
        msg = email.message_from_bytes(data)
    except RecursionError:
        # Thousands of nested multiparts: keep the headers and the body as one text part.
        msg = email.parser.BytesParser().parsebytes(data, headersonly=True)
        msg.set_type("text/plain")
    if any(type(d).__name__ == "MissingHeaderBodySeparatorDefect" for d in msg.defects):
        repaired = _repair_header_section(data)
        if repaired is not None:
            try:
                msg = email.message_from_bytes(repaired)
            except RecursionError:
                pass
    return msg


def _check_is_mail(msg: Message) -> None:
    names = {str(name).lower() for name in msg.keys()}
    if not names & _MAIL_HEADERS:
        raise NotAMessage("no e-mail header section")


# ---------------------------------------------------------------------------------------------
# Attachment names

_CONTENT_TYPE_EXT = {
    "message/rfc822": ".eml", "message/global": ".eml",
    "message/delivery-status": ".txt", "message/global-delivery-status": ".txt",
    "message/disposition-notification": ".txt", "text/rfc822-headers": ".txt",
    "text/plain": ".txt", "image/jpg": ".jpg", "image/pjpeg": ".jpg", "text/calendar": ".ics",
    "application/ms-tnef": ".dat", "application/pgp-signature": ".asc",
    "application/pgp-encrypted": ".asc", "application/pkcs7-signature": ".p7s",
    "application/x-pkcs7-signature": ".p7s", "application/pkcs7-mime": ".p7m",
    "application/x-pkcs7-mime": ".p7m",
}  # fmt: skip
_MAX_NAME = 200
# Control, format (bidi overrides such as U+202E "exe.pdf" tricks), surrogate, private use.
_BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn"}


def _extension(content_type: str) -> str:
    return _CONTENT_TYPE_EXT.get(content_type) or mimetypes.guess_extension(content_type) or ""


def safe_filename(name: str | None, content_type: str, index: int) -> str:
    """A file name safe to show and to store: no directories, no control characters, never
    empty (falls back to "attachment-N.ext" from the content type, or "file")."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _BAD_CATEGORIES)
    name = re.sub(r"\s+", " ", name).strip(" .")
    if len(name) > _MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        keep = ext if dot and len(ext) <= 10 else ""
        name = name[: _MAX_NAME - len(keep) - 1].rstrip(" .") + ("." + keep if keep else "")
    if name:
        return name
    ext = _extension(content_type)
    return f"attachment-{index}{ext}" if ext else "file"


# ---------------------------------------------------------------------------------------------
# MIME walk

_MAX_DEPTH = 40
_UUENCODE = re.compile(r"^begin [0-7]{3,4} ([^\r\n]+)\r?\n(.*?)^end[ \t]*$", re.M | re.S)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.-]+)""", re.I)
_UU_CTES = {"x-uuencode", "uuencode", "uue", "x-uue"}
_STRAY_CR = re.compile(r"\r+\n?")


def _normalise_newlines(text: str) -> str:
    if "\r" not in text:
        return text
    text = text.replace("\r\n", "\n")  # the common case, at C speed
    return _STRAY_CR.sub("\n", text) if "\r" in text else text


def _unflow(text: str, delsp: bool) -> str:
    """RFC 3676 format=flowed: join soft-broken lines, keep quote depth and signatures."""
    out: list[tuple[int, str]] = []
    depth_open, buffer = -1, ""
    for line in text.split("\n"):
        content = line.lstrip(">")
        depth = len(line) - len(content)
        if content.startswith(" "):
            content = content[1:]  # space stuffing
        flowed = content.endswith(" ") and content != "-- "
        if flowed and delsp:
            content = content[:-1]
        if depth_open == depth:
            buffer += content
        else:
            if depth_open >= 0:
                out.append((depth_open, buffer))
            depth_open, buffer = depth, content
        if not flowed:
            out.append((depth_open, buffer))
            depth_open, buffer = -1, ""
    if depth_open >= 0:
        out.append((depth_open, buffer))
    return "\n".join((">" * d + " " + c) if d else c for d, c in out)


def _uudecode(block: str) -> bytes | None:
    data = bytearray()
    for line in block.splitlines():
        stripped = line.strip()
        if not stripped or stripped == "`" or stripped == "end" or stripped.startswith("begin "):
            continue
        try:
            data += binascii.a2b_uu(line)
        except (binascii.Error, ValueError):
            try:  # some encoders emit more characters than the length byte says
                length = ((ord(line[0]) - 32) & 63) * 4 // 3
                data += binascii.a2b_uu(line[: length + 1])
            except (binascii.Error, ValueError, IndexError):
                return None
    return bytes(data)


def _payload(part: Message) -> bytes:
    """Decoded content of a leaf part, as forgiving as mail clients are."""
    raw_bytes = _raw_payload(part)
    try:
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - a broken transfer encoding must not lose the mail
        data = None
    if data is None:
        return raw_bytes
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if cte == "base64" and any(
        isinstance(d, email.errors.InvalidBase64LengthDefect) for d in part.defects
    ):
        data = _decode_b(raw_bytes.decode("ascii", "ignore"))  # one stray character too many
    elif cte in _UU_CTES and data == raw_bytes:
        data = _uudecode(raw_bytes.decode("latin-1")) or data  # no "begin" line
    return data


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")  # raw 8-bit bytes back as they came


def _raw_payload(part: Message) -> bytes:
    # The undecoded payload. Message.get_payload() itself decodes with the charset parameter
    # and raises on labels such as "utf-8\0"; compat32 keeps the wire text in _payload.
    payload = part._payload
    return _bytes(payload) if isinstance(payload, str) else b""


def _serialise(part: Message, nl: bytes, depth: int = 0) -> bytes:
    """A part as bytes, as close to the wire as compat32 keeps it (no re-folding, no
    re-encoding: the stdlib generator raises on bad charsets and rewrites headers)."""
    head = b"".join(
        _bytes(f"{name}:" + (f" {value}" if str(value) else "")) + nl
        for name, value in part.raw_items()
    )
    return head + nl + _serialise_body(part, nl, depth)


def _serialise_body(part: Message, nl: bytes, depth: int = 0) -> bytes:
    payload = part._payload
    if not isinstance(payload, list):
        return _raw_payload(part)
    if depth > _MAX_DEPTH:
        return b""
    children = [_serialise(child, nl, depth + 1) for child in payload if isinstance(child, Message)]
    if part.get_content_maintype() == "multipart":
        try:
            boundary = _bytes(part.get_boundary() or "")
        except Exception:  # noqa: BLE001 - malformed parameters
            boundary = b""
        delimiter = b"--" + boundary
        out = _bytes(part.preamble) + nl if part.preamble is not None else b""
        out += delimiter + nl + (nl + delimiter + nl).join(children)
        out += nl + delimiter + b"--" + nl
        return out + (_bytes(part.epilogue) if part.epilogue is not None else b"")
    if part.get_content_type() == "message/delivery-status":
        # Header blocks separated by one empty line.
        return nl.join(c[: -len(nl)] if c.endswith(nl) else c for c in children)
    return b"".join(children)  # message/rfc822: the attached message


def _flatten_body(part: Message, linesep: str) -> bytes:
    """Bytes of a message/* part's content (an attached mail, a DSN report)."""
    body = _serialise_body(part, linesep.encode())
    return body if body.strip() else b""


def _header_str(part: Message, name: str) -> str | None:
    value = part.get(name)
    if value is None:
        return None
    return _header_to_str(value) if isinstance(value, email.header.Header) else str(value)


def _plain_to_html(text: str) -> str:
    return "<div>" + html_escape(text).replace("\n", "<br>") + "</div>"


class _Slot:
    """One body position: its text/plain and/or text/html rendition."""

    __slots__ = ("plain", "html")

    def __init__(self, plain: str | None = None, html: str | None = None) -> None:
        self.plain = plain
        self.html = html


class _Walk:
    """Collects body slots (in document order) and attachments from one (sub)tree."""

    def __init__(self, hint: str | None, linesep: str) -> None:
        self.slots: list[_Slot] = []
        self.attachments: list[Attachment] = []
        self.hint = hint  # charset guess for undeclared 8-bit text (see _note_charset)
        self.linesep = linesep

    # -- results ----------------------------------------------------------------------------

    def has_plain(self) -> bool:
        return any(slot.plain and slot.plain.strip() for slot in self.slots)

    def has_html(self) -> bool:
        return any(slot.html is not None for slot in self.slots)

    def text(self) -> tuple[str, str]:
        """(text, body_content_type): plain parts, HTML converted where a slot has no text."""
        texts, from_plain, from_html = [], False, False
        for slot in self.slots:
            if slot.plain and slot.plain.strip():
                texts.append(slot.plain)
                from_plain = True
            elif slot.html:
                texts.append(html_to_text(slot.html))
                from_html = True
        kind = "text/html" if from_html and not from_plain else "text/plain"
        return "\n".join(texts), kind

    def html_source(self) -> str | None:
        if not self.has_html():
            return None
        return "\n".join(
            slot.html if slot.html is not None else _plain_to_html(slot.plain or "")
            for slot in self.slots
        )

    # -- walking ----------------------------------------------------------------------------

    def visit(self, part: Message, depth: int = 0, root: bool = False) -> None:
        if depth > _MAX_DEPTH:
            return
        ctype = part.get_content_type()
        maintype = ctype.partition("/")[0]
        self._note_charset(_codec(_param_str(part.get_param("charset"))))
        if maintype == "message" and not root:
            self._message_part(part, ctype)
        elif part.is_multipart():
            children = [c for c in part.get_payload() if isinstance(c, Message)]
            if ctype == "multipart/alternative":
                self._alternative(children, depth)
            elif ctype == "multipart/related":
                self._related(part, children, depth)
            else:
                for child in children:
                    self.visit(child, depth + 1)
        elif self._is_body(part, ctype, maintype, root):
            self._body(part, ctype)
        else:
            self._attachment(part, ctype)

    def _note_charset(self, codec: str | None) -> None:
        # The guess for undeclared 8-bit headers: the first declared charset, except that a
        # CJK one wins (an Outlook in Chinese sends raw GBK subjects with latin-1 parts).
        if codec in (None, "utf-8", "ascii"):
            return
        if self.hint is None or (_is_single_byte(self.hint) and not _is_single_byte(codec)):
            self.hint = codec

    @staticmethod
    def _is_body(part: Message, ctype: str, maintype: str, root: bool) -> bool:
        if _disposition(part) == "attachment":
            return False
        if maintype == "multipart":  # no usable boundary: the best we have is its text
            return True
        if ctype not in ("text/plain", "text/html"):
            return False
        return root or not _filename(part, None)

    def _alternative(self, children: list[Message], depth: int) -> None:
        # One body slot: the last (richest) alternative that has text, and the last that has
        # HTML. Keep every attachment, once, even when two alternatives carry it (Apple Mail).
        walks = []
        for child in children:
            walk = _Walk(self.hint, self.linesep)
            walk.visit(child, depth + 1)
            self._note_charset(walk.hint)
            walks.append(walk)
        with_plain = [w for w in walks if w.has_plain()] or [
            w for w in walks if any(slot.plain is not None for slot in w.slots)
        ]
        with_html = [w for w in walks if w.has_html()]
        plain = with_plain[-1].text()[0] if with_plain else None
        html = with_html[-1].html_source() if with_html else None
        if plain is not None or html is not None:
            self.slots.append(_Slot(plain, html))
        seen = {(a.filename, hashlib.md5(a.data).digest()) for a in self.attachments}
        for walk in walks:
            for attachment in walk.attachments:
                key = (attachment.filename, hashlib.md5(attachment.data).digest())
                if key not in seen:
                    seen.add(key)
                    self.attachments.append(attachment)

    def _related(self, part: Message, children: list[Message], depth: int) -> None:
        # RFC 2387: the root (first part, or the one named by start=) is the body; the other
        # parts are resources it refers to (images, even an unnamed text/html).
        start = _param_str(part.get_param("start"))
        root_index = 0
        if start:
            for index, child in enumerate(children):
                if (_header_str(child, "Content-ID") or "").strip() == start.strip():
                    root_index = index
                    break
        for index, child in enumerate(children):
            ctype = child.get_content_type()
            if index == root_index or child.is_multipart() and not ctype.startswith("message/"):
                self.visit(child, depth + 1)
            elif ctype.startswith("message/"):
                self._message_part(child, ctype)
            else:
                self._attachment(child, ctype)

    def _body(self, part: Message, ctype: str) -> None:
        data = _payload(part)
        charset = _param_str(part.get_param("charset"))
        if ctype == "text/html":
            if not _codec(charset):
                meta = _META_CHARSET.search(data[:4096])
                charset = meta.group(1).decode("ascii") if meta else None
            self.slots.append(_Slot(None, decode_bytes(data, charset, self.hint)))
            return
        text = _normalise_newlines(decode_bytes(data, charset, self.hint))
        if str(part.get_param("format", "")).lower() == "flowed":
            delsp = str(part.get_param("delsp", "")).lower() == "yes"
            text = _unflow(text, delsp)
        if "begin " in text:
            text = self._extract_uuencoded(text)
        self.slots.append(_Slot(text, None))

    def _extract_uuencoded(self, text: str) -> str:
        def take(match: re.Match[str]) -> str:
            data = _uudecode(match.group(2))
            if data is None:
                return match.group(0)
            name = match.group(1).strip()
            ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
            self._add(Attachment(name, ctype, data))
            return ""

        return _UUENCODE.sub(take, text)

    def _message_part(self, part: Message, ctype: str) -> None:
        name = _filename(part, self.hint)
        cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
        inner: Message | None = None
        if not part.is_multipart():
            data = _payload(part)
        elif cte in ("base64", "quoted-printable"):
            # An encoded message/rfc822 (forbidden by RFC 2046, sent anyway): the stdlib parses
            # the encoded text as a message without headers. Decode it ourselves.
            data = _flatten_body(part, self.linesep).lstrip(b"\r\n")
            data = (
                _decode_b(data.decode("ascii", "ignore"))
                if cte == "base64"
                else quopri.decodestring(data)
            )
        else:
            data = _flatten_body(part, self.linesep)
            inner = part.get_payload(0)
        if inner is None and data:
            inner = email.parser.BytesHeaderParser().parsebytes(data)
        if isinstance(inner, Message) and ctype in ("message/rfc822", "message/global"):
            for sub in inner.walk():  # its charsets are good guesses for our 8-bit headers
                self._note_charset(_codec(_param_str(sub.get_param("charset"))))
            if not name:
                subject = decode_header_value(_header_str(inner, "Subject"), self.hint)
                subject = re.sub(r"\s+", " ", subject.replace("/", "_")).strip()
                name = f"{subject or 'message'}.eml"
        if not name:
            name = ctype.partition("/")[2] + ".txt"  # delivery-status.txt & co.
        self._add(Attachment(name, ctype, data))

    def _attachment(self, part: Message, ctype: str) -> None:
        data = _payload(part)
        content_id = (_header_str(part, "Content-ID") or "").strip().strip("<>").strip() or None
        inline = content_id is not None and _disposition(part) != "attachment"
        name = _filename(part, self.hint)
        self._add(Attachment(name or "", ctype, data, content_id, inline))
        if ctype == "application/ms-tnef" or (name or "").lower() == "winmail.dat":
            for inner in extract_tnef(data):
                self._add(inner)

    def _add(self, attachment: Attachment) -> None:
        attachment.filename = safe_filename(
            attachment.filename, attachment.content_type, len(self.attachments) + 1
        )
        self.attachments.append(attachment)


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:  # noqa: BLE001 - unparsable header: as if absent
        return None


_NAME_HEADERS = ("content-disposition", "content-type")


def _param_str(value: object) -> str | None:
    if isinstance(value, tuple):  # RFC 2231 (charset, language, value)
        value = value[2]
    return value if isinstance(value, str) else None


def _filename(part: Message, hint: str | None) -> str | None:
    """Decoded file name from Content-Disposition/Content-Type (RFC 2231, RFC 2047, 8-bit)."""
    view = part
    raw = [(k, v) for k, v in part.raw_items() if k.lower() in _NAME_HEADERS]
    if any(not v.isascii() for _, v in raw):
        # compat32 replaces raw 8-bit bytes in parameters with U+FFFD: decode them first.
        view = Message()
        for k, v in raw:
            view[k] = _surrogates_to_text(v, hint)
    try:
        name = view.get_filename()
    except Exception:  # noqa: BLE001 - malformed RFC 2231 parameters
        name = None
    if name is None:
        return None
    return decode_header_value(name, hint).strip() or None


# ---------------------------------------------------------------------------------------------


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse one inbound e-mail. Raises NotAMessage only for input that is not an e-mail."""
    raw = bytes(raw)
    if not raw.strip():
        raise NotAMessage("empty input")
    msg = _parse_bytes(raw)
    _check_is_mail(msg)

    linesep = "\r\n" if b"\r\n" in raw[:4096] else "\n"
    walk = _Walk(None, linesep)
    walk.visit(msg, root=True)
    hint = walk.hint

    headers: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        headers.setdefault(name.lower(), []).append(
            _header_to_str(value) if isinstance(value, email.header.Header) else str(value)
        )

    def first(name: str) -> str | None:
        values = headers.get(name)
        return values[0] if values else None

    sender = _sender(headers, hint)
    text, body_content_type = walk.text()
    html_source = walk.html_source()

    subject = decode_header_value(first("subject"), hint)
    message_ids = _message_ids(first("message-id") or "")
    return ParsedMessage(
        raw=raw,
        message_id=message_ids[0] if message_ids else None,
        in_reply_to=_message_ids(" ".join(headers.get("in-reply-to", []))),
        references=_message_ids(" ".join(headers.get("references", []))),
        sender=sender,
        to=_addresses(headers.get("to", []), hint),
        cc=_addresses(headers.get("cc", []), hint),
        reply_to=_addresses(headers.get("reply-to", []), hint),
        subject=re.sub(r"\s+", " ", subject).strip(),
        date=_parse_date(first("date")),
        text=text,
        html=sanitize_html(html_source).strip() if html_source is not None else None,
        body_content_type=body_content_type,
        attachments=walk.attachments,
        email=msg,
        headers=headers_by_name(msg),
    )
