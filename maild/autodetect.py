"""Mail written by machines: bounces, out-of-office replies, bulk and system notifications.

None of them may get an acknowledgement (that is how mail loops start), and bounces and
auto-replies never open a ticket. Only headers, MIME structure and the subject are used:
a person who writes "sono fuori ufficio" in the body of a request is still a person.
"""

from __future__ import annotations

import email.message
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.parser import HeaderParser
from email.utils import getaddresses
from enum import StrEnum

from maild.message import headers_by_name


class AutoKind(StrEnum):
    BOUNCE = "bounce"  # non-delivery report (DSN, NDR, MAILER-DAEMON)
    AUTO_REPLY = "auto_reply"  # out of office, auto-responders, read receipts
    BULK = "bulk"  # mailing lists, newsletters, noreply/system notifications


@dataclass(slots=True)
class BounceInfo:
    original_message_id: str | None  # "<id@host>" of the mail that could not be delivered
    original_subject: str | None
    failed_recipients: list[str] = field(default_factory=list)  # lower-cased addresses
    status: str | None = None  # enhanced status code, e.g. "5.2.2"
    diagnostic: str | None = None  # e.g. "smtp; 550 5.1.1 ... not found"
    action: str | None = None  # DSN Action of the first recipient: "failed", "delayed", ...


# Subjects that only delivery systems write (anchored: "I: Non recapitabile: …" is a person
# forwarding a bounce to us, which is a request).
_BOUNCE_SUBJECT_RE = re.compile(
    r"^\s*(?:non\s+recapitabile\s*:|recapito\s+non\s+riuscito|mancato\s+recapito"
    r"|(?:messaggio|posta)\s+non\s+recapitat[oa]|impossibile\s+recapitare|undeliverable\s*:"
    r"|notifica\s+(?:dello\s+)?stato\s+(?:del\s+|di\s+)?recapito"
    r"|undelivered\s+mail\s+returned\s+to\s+sender|delivery\s+status\s+notification"
    r"|mail\s+delivery\s+failed|delivery\s+failure|message\s+delivery\s+failure"
    r"|delivery\s+has\s+failed|returned\s+mail\s*:|failure\s+notice|failed\s+mail"
    r"|mail\s+system\s+error|warning\s*:\s*could\s+not\s+send\s+message"
    r"|unzustellbar\s*:|nicht\s+zustellbar|non\s+remis\s*:|benachrichtigung\s+zum\s+"
    r"\S*bermittlungsstatus)",
    re.IGNORECASE,
)
# Out-of-office subjects written by Exchange, Outlook, Gmail, Zimbra, webmails.
_AUTO_REPLY_SUBJECT_RE = re.compile(
    r"^\s*(?:risposta\s+automatica|automatic\s+reply|auto(?:matic)?[\s-]?reply|autoreply"
    r"|auto[\s-]?response|out\s+of\s+(?:the\s+)?office|fuori\s+(?:ufficio|sede)|assente"
    r"|assenza|abwesenheitsnotiz|automatische\s+antwort|r[ée]ponse\s+automatique"
    r"|respuesta\s+autom[áa]tica|absence)\b",
    re.IGNORECASE,
)
_ANY_AUTO_REPLY_HEADERS = (
    "X-Autoreply",
    "X-Autorespond",
    "X-Autoresponder",
    "X-Auto-Reply",
    "X-Autoreply-From",
    "X-Mail-Autoreply",
    "X-Vacation",
)
_PEC_FAILURES = {
    "errore-consegna",
    "preavviso-errore-consegna",
    "non-accettazione",
    "rilevazione-virus",
}
_SYSTEM_SENDER_RE = re.compile(r"^(?:mailer-daemon|postmaster)(?:@|$)", re.IGNORECASE)
_NOREPLY_RE = re.compile(r"^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply)", re.IGNORECASE)
_ADDRESS_RE = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
_STATUS_RE = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_MSGID_RE = re.compile(r"<[^<>\s]+@[^<>\s]+>")


class _Indexed:
    """A message whose headers are looked up by name in a dict. Message.get and `in` scan
    every header and lower-case each name on every call, and the rules here ask some thirty
    times; everything else is the message's own."""

    def __init__(self, msg: email.message.Message, by_name: dict[str, list] | None = None) -> None:
        self._msg = msg
        self._by_name = headers_by_name(msg) if by_name is None else by_name
        self._sender: str | None = None

    def get(self, name: str, failobj=None):
        values = self._by_name.get(name.lower())
        return values[0] if values else failobj

    def get_all(self, name: str, failobj=None):
        values = self._by_name.get(name.lower())
        return list(values) if values else failobj

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._by_name

    def __getattr__(self, attr: str):
        return getattr(self._msg, attr)

    def sender(self) -> str:
        if self._sender is None:
            self._sender = _sender_of(self)
        return self._sender


def classify_auto(
    msg: email.message.Message,
    subject: str | None = None,
    headers: dict[str, list] | None = None,
) -> AutoKind | None:
    """Which kind of automatic mail this is, None for mail written by a person.

    `subject` is the decoded subject (decoded from the message when None); `headers`, the
    message's headers by lower-cased name when the caller has them already
    (maild.message.ParsedMessage.headers).
    """
    msg = _Indexed(msg, headers)  # type: ignore[assignment]
    if subject is None:
        subject = _decoded(msg.get("Subject"))
    # PEC receipts answer our own PEC sendings (maild.pec reads them); a delivery error is a
    # bounce, the others are machine notices. PEC envelopes (X-Trasporto) carry people's mail.
    pec_receipt = _header(msg, "X-Ricevuta")
    if pec_receipt:
        return AutoKind.BOUNCE if pec_receipt in _PEC_FAILURES else AutoKind.AUTO_REPLY
    if is_bounce(msg, subject):
        return AutoKind.BOUNCE
    if _is_auto_reply(msg, subject):
        return AutoKind.AUTO_REPLY
    if _is_bulk(msg):
        return AutoKind.BULK
    if _null_return_path(msg):
        # RFC 3834: automatic responses go out with an empty envelope sender
        return AutoKind.AUTO_REPLY
    return None


def is_bounce(msg: email.message.Message, subject: str | None = None) -> bool:
    if subject is None:
        subject = _decoded(msg.get("Subject"))
    if _report_type(msg) == "delivery-status" or _find_part(msg, _DSN_TYPES) is not None:
        return True
    if "X-MS-Exchange-Message-Is-Ndr" in msg or "X-Failed-Recipients" in msg:
        return True
    if _BOUNCE_SUBJECT_RE.match(subject or ""):
        return True
    sender = _sender_address(msg)
    if _SYSTEM_SENDER_RE.match(sender):
        # MAILER-DAEMON writes nothing but bounces; postmaster may be a person too
        return sender.lower().startswith("mailer-daemon") or (
            _null_return_path(msg) or _auto_submitted(msg) is not None
        )
    return False


def _is_auto_reply(msg: email.message.Message, subject: str) -> bool:
    if any(h in msg for h in _ANY_AUTO_REPLY_HEADERS):
        return True
    if _header(msg, "Precedence") == "auto_reply" or _header(msg, "X-Precedence") == "auto_reply":
        return True
    if _report_type(msg) == "disposition-notification":  # read receipt
        return True
    auto_submitted = _auto_submitted(msg)
    if auto_submitted == "auto-replied":
        return True
    # Exchange out-of-office: Inbox rules answer with these (Zammad's out_of_office_check)
    exchange_rules = "X-MS-Exchange-Inbox-Rules-Loop" in msg or (
        "mailbox rules agent" in _header(msg, "X-MS-Exchange-Generated-Message-Source")
    )
    if "X-Auto-Response-Suppress" in msg and exchange_rules:
        return True
    if _AUTO_REPLY_SUBJECT_RE.match(subject or ""):
        # the subject alone could be a person's ("Fuori ufficio da lunedì: chi mi sostituisce?");
        # with any machine marker it is an answering machine
        return bool(
            auto_submitted
            or exchange_rules
            or "X-Auto-Response-Suppress" in msg
            or _null_return_path(msg)
            or re.match(r"^\s*(?:risposta\s+automatica|automatic\s+reply)\s*:", subject, re.I)
        )
    return False


def _is_bulk(msg: email.message.Message) -> bool:
    precedence = _header(msg, "Precedence") or _header(msg, "X-Precedence")
    if precedence in ("bulk", "junk", "list"):
        return True
    if "List-Id" in msg or "List-Unsubscribe" in msg:
        return True
    if _auto_submitted(msg) is not None:  # auto-generated, auto-notified: system notifications
        return True
    return bool(_NOREPLY_RE.match(_sender_address(msg)))


# --- bounce details -------------------------------------------------------------------------

_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
_RETURNED_TYPES = ("message/rfc822", "message/global")
_RETURNED_HEADERS_TYPES = (
    "text/rfc822-headers",
    "message/rfc822-headers",
    "message/global-headers",
)


def bounce_info(msg: email.message.Message) -> BounceInfo | None:
    """What bounced and why; None when the message is not a bounce."""
    if not is_bounce(msg):
        return None
    info = BounceInfo(original_message_id=None, original_subject=None)
    _read_dsn(msg, info)
    for name in msg.get_all("X-Failed-Recipients", []):
        for _, address in getaddresses([str(name)]):
            _add_recipient(info, address)
    _read_returned_message(msg, info)
    text = _first_text(msg)
    if not info.failed_recipients:
        # Postfix/Exim text: "<user@host>: reason"; Exchange: the address on its own line
        for m in re.finditer(r"^\s*<?(" + _ADDRESS_RE.pattern + r")>?\s*:?\s*", text, re.M):
            _add_recipient(info, m.group(1))
    if info.status is None:
        m = _STATUS_RE.search(text)
        info.status = m.group(1) if m else None
    if info.diagnostic is None:
        m = re.search(
            r"^.*(?:remote server returned|said:|\b[45]\d\d[ -][245]\.\d).*$", text, re.M | re.I
        )
        info.diagnostic = m.group(0).strip() if m else None
    if info.original_message_id is None:
        m = re.search(r"^message-id:\s*(<[^>\s]+>)", text, re.M | re.I)
        if m:
            info.original_message_id = m.group(1)
    if info.original_subject is None:
        m = re.search(r"^subject:\s*(.+)$", text, re.M | re.I)
        if m:
            info.original_subject = _decoded(m.group(1).strip())
    if info.original_message_id is None:
        # last resort: the bounce threads to the message it returns
        ids = _MSGID_RE.findall(str(msg.get("In-Reply-To", ""))) or _MSGID_RE.findall(
            str(msg.get("References", ""))
        )
        info.original_message_id = ids[0] if ids else None
    return info


def _read_dsn(msg: email.message.Message, info: BounceInfo) -> None:
    dsn = _find_part(msg, _DSN_TYPES)
    if dsn is None:
        return
    blocks = dsn.get_payload()
    if isinstance(blocks, str):  # some parsers leave it as text: read it as header blocks
        blocks = [HeaderParser().parsestr(b) for b in re.split(r"\n\s*\n", blocks) if b.strip()]
    for block in blocks:
        if not isinstance(block, email.message.Message):
            continue
        if info.original_message_id is None and block.get("X-Original-Message-ID"):
            ids = _MSGID_RE.findall(str(block["X-Original-Message-ID"]))
            info.original_message_id = ids[0] if ids else None
        recipient = block.get("Final-Recipient") or block.get("Original-Recipient")
        if recipient is None:
            continue  # the per-message block
        action = _unfold(block.get("Action", "")).lower() or None
        if info.action is None:
            info.action = action
            status = _STATUS_RE.search(_unfold(block.get("Status", "")))
            info.status = status.group(1) if status else None
            info.diagnostic = _unfold(block.get("Diagnostic-Code", "")) or None
        if action in (None, "failed"):
            _add_recipient(info, str(recipient).split(";", 1)[-1])


def _read_returned_message(msg: email.message.Message, info: BounceInfo) -> None:
    returned: email.message.Message | None = None
    part = _find_part(msg, _RETURNED_TYPES)
    if part is not None:
        payload = part.get_payload()
        if isinstance(payload, list) and payload:
            returned = payload[0]
    if returned is None:
        part = _find_part(msg, _RETURNED_HEADERS_TYPES)
        if part is not None:
            raw = part.get_payload(decode=True) or b""
            returned = HeaderParser().parsestr(raw.decode("utf-8", "replace"))
    if returned is None:
        return
    ids = _MSGID_RE.findall(str(returned.get("Message-ID", "")))
    if ids:
        info.original_message_id = ids[0]
    if returned.get("Subject") is not None:
        info.original_subject = _decoded(returned.get("Subject"))


def _add_recipient(info: BounceInfo, value: str) -> None:
    m = _ADDRESS_RE.search(value or "")
    if m and m.group(0).lower() not in info.failed_recipients:
        info.failed_recipients.append(m.group(0).lower())


# --- helpers --------------------------------------------------------------------------------


def _decoded(value: object) -> str:
    if value is None:
        return ""
    try:
        return _unfold(str(make_header(decode_header(str(value)))))
    except (LookupError, ValueError, UnicodeError):
        return _unfold(str(value))


def _unfold(value: object) -> str:
    return re.sub(r"\s+", " ", str(value or "")).strip()


def _header(msg: email.message.Message, name: str) -> str:
    return _unfold(msg.get(name, "")).lower()


def _auto_submitted(msg: email.message.Message) -> str | None:
    """The Auto-Submitted keyword ("auto-replied", "auto-generated", …), None when absent or "no"."""
    value = _header(msg, "Auto-Submitted").split(";", 1)[0].strip()
    return None if value in ("", "no") else value


def _null_return_path(msg: email.message.Message) -> bool:
    paths = msg.get_all("Return-Path") or []
    return bool(paths) and _unfold(paths[0]) in ("<>", "")


def _sender_address(msg: email.message.Message) -> str:
    if isinstance(msg, _Indexed):
        return msg.sender()
    return _sender_of(msg)


def _sender_of(msg: email.message.Message) -> str:
    addresses = getaddresses([str(v) for v in msg.get_all("From", [])])
    for name, address in addresses:
        if address:
            return address.strip().lower()
        if name:  # "From: MAILER-DAEMON (Mail Delivery System)" has no domain
            return name.strip().lower()
    return ""


def _report_type(msg: email.message.Message) -> str:
    if msg.get_content_type() != "multipart/report":
        return ""
    return str(msg.get_param("report-type", "") or "").lower()


def _parts(msg: email.message.Message) -> Iterator[email.message.Message]:
    """The message's parts, not descending into attached messages: a bounce forwarded to us
    as an attachment by a person is the person's mail."""
    yield msg
    if msg.is_multipart() and not msg.get_content_type().startswith("message/"):
        for part in msg.get_payload():
            if isinstance(part, email.message.Message):
                yield from _parts(part)


def _find_part(msg: email.message.Message, types: tuple[str, ...]) -> email.message.Message | None:
    for part in _parts(msg):
        if part.get_content_type() in types:
            return part
    return None


def _first_text(msg: email.message.Message) -> str:
    """The delivery system's own explanation (first text/plain outside the returned message)."""
    for part in _parts(msg):
        if part.get_content_type() == "text/plain" and not part.get_filename():
            raw = part.get_payload(decode=True) or b""
            try:
                return raw.decode(part.get_content_charset() or "utf-8", "replace")
            except LookupError:
                return raw.decode("utf-8", "replace")
    return ""
