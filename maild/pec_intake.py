"""PEC (posta elettronica certificata) in the pipeline: envelopes opened, receipts recorded.

- A transport envelope ("busta di trasporto") is replaced, before classification, by the
  message it carries (postacert.eml): its real sender, subject, body and attachments, so the
  ticket and the acknowledgement go to the person who wrote, not to posta-certificata@. The
  whole envelope (signed, with the legal value) and daticert.xml stay attached as evidence.
- An anomaly envelope ("busta di anomalia": mail that failed the provider's checks, or came
  from an ordinary mailbox) is opened the same way and marked: a note heads the text and the
  evidence is labelled as an anomaly.
- Receipts (accettazione, avvenuta-consegna, errore-consegna, ...) are never tickets and never
  answered: each is recorded on the ticket whose message it concerns, else the source moves
  it to the mailbox's receipts folder (outcome `pec_receipt_unmatched`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy import select

from maild import facts, pec
from maild.log import get_logger
from maild.message import Address, Attachment, ParsedMessage
from maild.models import MessageRef, Ticket
from maild.tickets import record_event, resolve_merged

if TYPE_CHECKING:
    from maild.classify import Decision
    from maild.ingest import Context

log = get_logger("maild.pec")

ROUTE_RECEIPT = "pec_receipt"
ENVELOPE_NAME = "busta-pec.eml"
ANOMALY_NAME = "busta-anomalia-pec.eml"
DATICERT_NAME = "daticert.xml"
ANOMALY_NOTE = (
    "[ANOMALIA PEC] Il gestore PEC ha consegnato questo messaggio in una busta di anomalia: "
    "non è posta certificata (mittente o contenuto non garantiti dal gestore)."
)

# --- envelopes ----------------------------------------------------------------------------


def open_envelope(msg: ParsedMessage, _depth: int = 0) -> ParsedMessage:
    """A PEC transport or anomaly envelope becomes the message it carries; anything else
    (receipts included) is returned unchanged."""
    if msg.email is None or _depth > 2:
        return msg
    info = facts.pec_info(msg)
    if info is None or info.kind == "receipt":
        return msg
    inner = _parse_original(info)
    nested = False
    if inner is not None:
        # an anomaly envelope may wrap a transport envelope that failed the checks
        # ("ANOMALIA MESSAGGIO: POSTA CERTIFICATA: R: ..."): open that one too
        opened_inner = open_envelope(inner, _depth + 1)
        nested, inner = opened_inner is not inner, opened_inner
    anomaly = info.kind == "anomaly"
    evidence = [Attachment(ANOMALY_NAME if anomaly else ENVELOPE_NAME, "message/rfc822", msg.raw)]
    if info.daticert_xml:
        evidence.append(Attachment(DATICERT_NAME, "application/xml", info.daticert_xml))

    if inner is None:
        # nothing readable inside: keep the envelope's own text, but not its provider sender
        opened = replace(msg, attachments=[*msg.attachments])
    else:
        opened = replace(inner, raw=msg.raw, attachments=[*inner.attachments, *evidence])
        if opened.message_id is None:
            opened.message_id = info.riferimento_message_id or info.daticert.get("msgid")
        if opened.date is None:
            opened.date = msg.date
    if info.real_sender and (inner is None or not opened.sender.email):
        name = opened.sender.name if opened.sender.email == info.real_sender else ""
        opened.sender = Address(name, info.real_sender)
    if info.original_subject and not nested:
        opened.subject = info.original_subject  # PEC prefixes removed, even stacked ones
    if anomaly:
        opened.text = f"{ANOMALY_NOTE}\n\n{opened.text}"
        if opened.html is not None:
            opened.html = f"<p><b>{ANOMALY_NOTE}</b></p>\n{opened.html}"
    log.info(
        "pec_envelope_opened",
        kind=info.kind,
        sender=opened.sender.email,
        envelope_id=msg.message_id,
        message_id=opened.message_id,
    )
    return opened


def _parse_original(info: pec.PecInfo) -> ParsedMessage | None:
    from maild.parse import NotAMessage, parse_message

    if not info.original:
        return None
    try:
        return parse_message(info.original)
    except NotAMessage:
        return None


# --- receipts -----------------------------------------------------------------------------


def rule_pec_receipt(ctx: Context, msg: ParsedMessage) -> Decision | None:
    from maild.classify import Decision

    info = facts.pec_info(msg)
    if info is None or info.kind != "receipt":
        return None
    ticket = ticket_of_receipt(ctx, info)
    reason = f"PEC receipt {info.receipt_type or '?'}"
    return Decision(ROUTE_RECEIPT, ticket=ticket, reason=reason, info={"pec": info})


def ticket_of_receipt(ctx: Context, info: pec.PecInfo) -> Ticket | None:
    """The ticket of the message the receipt concerns: X-Riferimento-Message-ID first,
    then daticert.xml's msgid (the same id, but headers get lost through gateways)."""
    ids = [i for i in (info.riferimento_message_id, info.daticert.get("msgid")) if i]
    for mid in dict.fromkeys(ids):
        ticket_id = ctx.session.scalar(
            select(MessageRef.ticket_id).where(MessageRef.message_id == mid)
        )
        if ticket_id is not None:
            return resolve_merged(ctx.session, ctx.session.get(Ticket, ticket_id))
    return None


def receipt_summary(info: pec.PecInfo) -> str:
    """One line for the ticket's history: the receipt, for whom, and the error if any."""
    d = info.daticert
    parts = [info.receipt_type or "ricevuta"]
    who = d.get("consegna") or ", ".join(d.get("destinatari", []))
    if who:
        parts.append(who)
    if d.get("errore") and d["errore"] != "nessuno":
        parts.append(f"errore {d['errore']}")
    if d.get("errore_esteso"):
        parts.append(d["errore_esteso"])
    return ": ".join(parts[:2]) + "".join(f" ({p})" for p in parts[2:])


def handle_pec_receipt(
    ctx: Context, msg: ParsedMessage, decision: Decision
) -> tuple[str, Ticket | None]:
    """Kept on its ticket as an internal article (the receipt has legal value: the whole
    signed message and daticert.xml stay attached) plus a history event; no mail goes out."""
    ticket = decision.ticket
    if ticket is None:
        return "pec_receipt_unmatched", None
    info: pec.PecInfo = decision.info["pec"]
    summary = receipt_summary(info)
    ctx.store_article(ticket, msg, f"Ricevuta PEC: {summary}\n\n{msg.text}", internal=True)
    record_event(ctx.session, ticket, ctx.now, msg.sender.email, "pec_receipt", None, summary)
    return "pec_receipt", ticket


HANDLERS: dict = {ROUTE_RECEIPT: handle_pec_receipt}
