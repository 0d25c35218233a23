"""PEC (posta elettronica certificata): envelopes, anomaly envelopes and receipts.

A PEC mailbox never receives the sender's mail directly: the provider wraps it in a signed
"busta di trasporto" (From "Per conto di: <sender>" <posta-certificata@provider>) that
carries the real mail as postacert.eml and the certification data as daticert.xml. Mail
that failed the provider's checks arrives in a "busta di anomalia"; receipts (accettazione,
avvenuta-consegna, errore-consegna, …) answer our own PEC sendings. See
shared/corpus/pec/STRUCTURE.md.

`read_pec` only reads the structure; it does not verify the S/MIME signature.
"""

from __future__ import annotations

import email.message
import email.policy
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from email.header import decode_header, make_header
from email.utils import getaddresses
from typing import Literal

PecKind = Literal["envelope", "anomaly", "receipt"]

RECEIPT_TYPES = frozenset(
    {
        "accettazione",
        "non-accettazione",
        "presa-in-carico",
        "avvenuta-consegna",
        "errore-consegna",
        "preavviso-errore-consegna",
        "rilevazione-virus",
    }
)


@dataclass(slots=True)
class PecInfo:
    kind: PecKind
    receipt_type: str | None  # X-Ricevuta value for receipts, None for envelopes
    riferimento_message_id: str | None  # X-Riferimento-Message-ID, "<…>"
    original: bytes | None  # postacert.eml (envelopes, "completa" receipts) or the wrapped mail
    daticert: dict = field(default_factory=dict)  # see _parse_daticert
    daticert_xml: bytes | None = None
    real_sender: str | None = None  # the original sender's address, lower-cased
    original_subject: str | None = None  # subject of the certified message, PEC prefix removed
    tipo_ricevuta: str | None = None  # X-TipoRicevuta: completa | breve | sintetica


_PEC_SUBJECT_PREFIX_RE = re.compile(
    r"^\s*(?:POSTA CERTIFICATA|ANOMALIA MESSAGGIO|ACCETTAZIONE|AVVISO DI NON ACCETTAZIONE"
    r"|PRESA IN CARICO|CONSEGNA|AVVISO DI MANCATA CONSEGNA|PREAVVISO DI MANCATA CONSEGNA"
    r"(?: PER SUPERAMENTO TEMPO MASSIMO)?|AVVISO DI RILEVAZIONE VIRUS|PROBLEMA DI SICUREZZA)\s*:\s*"
)  # case-sensitive: providers write them upper-case, "Consegna: toner" is a person's subject
_PER_CONTO_DI_RE = re.compile(r"per\s+conto\s+di\s*:\s*(.+)", re.IGNORECASE)
_ADDRESS_RE = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")


def read_pec(msg: email.message.Message) -> PecInfo | None:
    """The PEC view of a message; None when it is ordinary mail."""
    transport = _header(msg, "X-Trasporto").lower()
    receipt = _header(msg, "X-Ricevuta").lower()
    daticert_part = _find_daticert(msg)
    daticert_xml = daticert_part.get_payload(decode=True) if daticert_part is not None else None
    daticert = _parse_daticert(daticert_xml) if daticert_xml else {}

    kind: PecKind
    if transport == "errore":
        kind = "anomaly"
    elif transport == "posta-certificata":
        kind = "envelope"
    elif receipt:
        kind = "receipt"
    elif daticert.get("tipo") == "posta-certificata":  # headers lost on the way (gateways)
        kind = "envelope"
    elif daticert.get("tipo") in RECEIPT_TYPES:
        kind, receipt = "receipt", daticert["tipo"]
    else:
        return None

    original_part = _find_original(msg, any_name=(kind == "anomaly"))
    original = _as_bytes(original_part) if original_part is not None else None
    return PecInfo(
        kind=kind,
        receipt_type=(receipt or None) if kind == "receipt" else None,
        riferimento_message_id=_header(msg, "X-Riferimento-Message-ID") or None,
        original=original,
        daticert=daticert,
        daticert_xml=daticert_xml,
        real_sender=_real_sender(msg, original_part, daticert),
        original_subject=_original_subject(msg, original_part, daticert),
        tipo_ricevuta=(_header(msg, "X-TipoRicevuta") or daticert.get("ricevuta") or None),
    )


# --- structure ------------------------------------------------------------------------------


def _parts(msg: email.message.Message):
    """Every part of the PEC message (through multipart/signed and a mailing-list
    multipart/mixed around it), not descending into the attached original message."""
    yield msg
    if msg.is_multipart():
        for part in msg.get_payload():
            if isinstance(part, email.message.Message) and not _is_message(part):
                yield from _parts(part)
            elif isinstance(part, email.message.Message):
                yield part


def _is_message(part: email.message.Message) -> bool:
    return part.get_content_type() in ("message/rfc822", "message/global")


def _filename(part: email.message.Message) -> str:
    name = part.get_filename() or part.get_param("name") or ""
    return str(name).strip().lower()


def _find_daticert(msg: email.message.Message) -> email.message.Message | None:
    for part in _parts(msg):
        if (
            not part.is_multipart()
            and _may_name_daticert(part)
            and _filename(part) == "daticert.xml"
        ):
            return part
    return None


def _may_name_daticert(part: email.message.Message) -> bool:
    """A quick test before decoding the part's file name (RFC 2231, 2047: costly, and
    asked of every part of every message): its raw name headers say "daticert", or carry
    an RFC 2231 parameter (split or encoded: "filename*0=", "filename*=") that could."""
    for name, value in part.raw_items():
        if name.lower() in ("content-disposition", "content-type"):
            low = str(value).lower()
            if "daticert" in low or "*" in low:
                return True
    return False


def _find_original(msg: email.message.Message, any_name: bool) -> email.message.Message | None:
    candidates = [p for p in _parts(msg) if p is not msg and _is_message(p)]
    for part in candidates:
        if _filename(part) == "postacert.eml":
            return part
    # the anomaly envelope wraps the mail under whatever name the provider chose
    return candidates[0] if any_name and candidates else None


def _inner(part: email.message.Message) -> email.message.Message | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], email.message.Message):
        return payload[0]
    return None


def _as_bytes(part: email.message.Message) -> bytes | None:
    inner = _inner(part)
    if inner is None:
        return None
    # keep the line ends the provider used (the parser keeps them in folded headers and bodies)
    crlf = any("\r\n" in str(v) for v in inner.values()) or any(
        isinstance(p.get_payload(), str) and "\r\n" in p.get_payload() for p in inner.walk()
    )
    policy = email.policy.compat32.clone(linesep="\r\n") if crlf else email.policy.compat32
    try:
        return inner.as_bytes(policy=policy)
    except (LookupError, UnicodeError, ValueError, TypeError):
        # the generator re-encodes some parts and gives up on odd charsets; the text form
        # keeps the undecodable bytes as surrogates
        try:
            return inner.as_string(policy=policy).encode("utf-8", "surrogateescape")
        except (LookupError, UnicodeError, ValueError, TypeError):
            return None


# --- daticert.xml ---------------------------------------------------------------------------


def _parse_daticert(data: bytes) -> dict:
    """daticert.xml as a flat dict: tipo, errore, mittente, destinatari (list),
    destinatari_esterni (list), risposte, oggetto, gestore_emittente, giorno, ora, zona,
    data (ISO 8601), identificativo, msgid, ricevuta, consegna, ricezione, errore_esteso.
    Missing elements are absent. A document declaring entities is refused ({}): the
    standard library parser would expand them (billion laughs)."""
    if b"<!ENTITY" in data.upper():
        return {}
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return {}
    if root.tag != "postacert":
        return {}
    out: dict = {}
    for attr in ("tipo", "errore"):
        if root.get(attr):
            out[attr] = root.get(attr).strip()
    head = root.find("intestazione")
    if head is not None:
        destinatari = head.findall("destinatari")
        out["destinatari"] = [_text(d) for d in destinatari if _text(d)]
        out["destinatari_esterni"] = [
            _text(d) for d in destinatari if _text(d) and d.get("tipo") == "esterno"
        ]
        for name in ("mittente", "risposte", "oggetto"):
            _put(out, name, head.find(name))
    dati = root.find("dati")
    if dati is not None:
        for name in ("gestore-emittente", "identificativo", "msgid", "consegna", "ricezione",
                     "errore-esteso"):  # fmt: skip
            _put(out, name.replace("-", "_"), dati.find(name))
        ricevuta = dati.find("ricevuta")
        if ricevuta is not None and ricevuta.get("tipo"):
            out["ricevuta"] = ricevuta.get("tipo").strip()
        data_el = dati.find("data")
        if data_el is not None:
            _put(out, "giorno", data_el.find("giorno"))
            _put(out, "ora", data_el.find("ora"))
            if data_el.get("zona"):
                out["zona"] = data_el.get("zona").strip()
            when = _when(out.get("giorno"), out.get("ora"), out.get("zona"))
            if when is not None:
                out["data"] = when.isoformat()
    return out


def _text(el: ET.Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def _put(out: dict, name: str, el: ET.Element | None) -> None:
    if _text(el):
        out[name] = _text(el)


def _when(giorno: str | None, ora: str | None, zona: str | None) -> datetime | None:
    if not giorno or not ora:
        return None
    try:
        return datetime.strptime(f"{giorno} {ora} {zona or '+0000'}", "%d/%m/%Y %H:%M:%S %z")
    except ValueError:
        return None


# --- who and what ---------------------------------------------------------------------------


def _real_sender(
    msg: email.message.Message, original: email.message.Message | None, daticert: dict
) -> str | None:
    inner = _inner(original) if original is not None else None
    if inner is not None:
        address = _first_address(inner.get_all("From", []))
        if address:
            return address
    if daticert.get("mittente"):
        m = _ADDRESS_RE.search(daticert["mittente"])
        return m.group(0).lower() if m else daticert["mittente"].lower()
    for name, _ in getaddresses([_decoded(v) for v in msg.get_all("From", [])]):
        m = _PER_CONTO_DI_RE.search(name)
        if m:
            found = _ADDRESS_RE.search(m.group(1))
            return found.group(0).lower() if found else m.group(1).strip().lower()
    return None


def _original_subject(
    msg: email.message.Message, original: email.message.Message | None, daticert: dict
) -> str | None:
    inner = _inner(original) if original is not None else None
    if inner is not None and inner.get("Subject") is not None:
        subject = _decoded(inner.get("Subject"))
    elif daticert.get("oggetto"):
        subject = daticert["oggetto"]
    else:
        subject = _decoded(msg.get("Subject"))
    # stacked prefixes happen ("POSTA CERTIFICATA: POSTA CERTIFICATA: …")
    while (stripped := _PEC_SUBJECT_PREFIX_RE.sub("", subject, count=1)) != subject:
        subject = stripped
    return subject or None


def _first_address(values: list) -> str | None:
    for _, address in getaddresses([str(v) for v in values]):
        if "@" in address:
            return address.strip().lower()
    return None


def _decoded(value: object) -> str:
    if value is None:
        return ""
    try:
        text = str(make_header(decode_header(str(value))))
    except (LookupError, ValueError, UnicodeError):
        text = str(value)
    return re.sub(r"\s+", " ", text).strip()


def _header(msg: email.message.Message, name: str) -> str:
    return _decoded(msg.get(name))
