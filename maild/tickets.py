"""Tickets: numbering, creation, articles, finding the ticket a message belongs to."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.batch import ARTICLES, ATTACHMENTS, EVENTS, batch_of
from maild.blobs import BlobStore
from maild.message import Attachment, ParsedMessage
from maild.models import Ticket


def next_seq(session: Session, year: int) -> int:
    """The next number of `year`, taken inside the caller's transaction.

    The counter row is updated (so locked) until commit: concurrent creators queue on it,
    a rollback gives the number back, so numbers have no gaps and are never reused.
    """
    return batch_of(session).next_seq(session, year)


# PostgreSQL enforces column lengths: hostile or broken headers are cut, never refused
def create_ticket(
    session: Session,
    *,
    number_format: str,
    now: datetime,
    local_year: int,
    title: str,
    requester_email: str,
    requester_name: str = "",
    ente: str | None = None,
    priority: str = "MEDIA",
    kind: str = "richiesta",
    origin_message_id: str | None = None,
    actor: str = "maild",
    flush: bool = True,
) -> Ticket:
    """A new ticket with the year's next number. flush=False leaves the INSERT to the
    batch (ticket.id stays None until then; rows made with the ticket object resolve it)."""
    seq = next_seq(session, local_year)
    ticket = Ticket(
        number=number_format.format(year=local_year, seq=seq),
        year=local_year,
        seq=seq,
        title=title[:998] or "(senza oggetto)",
        status="nuovo",
        priority=priority,
        kind=kind,
        ente=ente,
        requester_email=requester_email[:320],
        requester_name=requester_name[:320],
        origin_message_id=origin_message_id,
        created_at=now,
        updated_at=now,
        watchers=[],
    )
    session.add(ticket)
    if flush:
        session.flush()
    record_event(session, ticket, now, actor, "created", None, ticket.number)
    return ticket


def record_event(
    session: Session,
    ticket: Ticket,
    at: datetime,
    actor: str,
    field: str,
    old: str | None,
    new: str | None,
) -> None:
    batch_of(session).add(
        EVENTS,
        {
            "ticket_id": ticket.id or ticket,
            "at": at,
            "actor": actor,
            "field": field,
            "old_value": old,
            "new_value": new,
        },
    )


def add_inbound_article(
    session: Session,
    blobs: BlobStore,
    ticket: Ticket,
    msg: ParsedMessage,
    *,
    body_text: str,
    raw_sha256: str,
    now: datetime,
    internal: bool = False,
    direction: str = "in",
    extra_attachments: tuple[Attachment, ...] = (),
) -> None:
    """The message as an article of `ticket`, its attachments stored under state_dir."""
    batch = batch_of(session)
    article = batch.add(
        ARTICLES,
        {
            "ticket_id": ticket.id or ticket,
            "direction": direction,
            "internal": internal,
            "sender": msg.sender.email[:320],
            "recipients": [a.email for a in (*msg.to, *msg.cc)],
            "subject": msg.subject,
            "date": msg.date or now,
            "message_id": msg.message_id,
            "body_text": body_text,
            "body_html": msg.html,
            "raw_sha256": raw_sha256,
            "created_at": now,
        },
    )
    for att in (*msg.attachments, *extra_attachments):
        batch.add(
            ATTACHMENTS,
            {
                "article_id": article,
                "filename": att.filename[-255:],  # keep the extension
                "content_type": att.content_type[:255],
                "size": att.length,
                "sha256": _stored(blobs, att),
                "content_id": att.content_id[:998] if att.content_id else None,
                "inline": att.inline,
            },
        )
    if msg.message_id:
        remember_message_id(session, msg.message_id, ticket)
    ticket.updated_at = now


def _stored(blobs: BlobStore, att: Attachment) -> str:
    if att.sha256 is None:
        att.sha256 = blobs.put(att.data)
    return att.sha256


def remember_message_id(session: Session, message_id: str, ticket: Ticket | int) -> None:
    batch = batch_of(session)
    batch.prefetch_refs(session, [message_id])
    batch.remember(message_id, ticket.id or ticket if isinstance(ticket, Ticket) else ticket)


def resolve_merged(session: Session, ticket: Ticket) -> Ticket:
    seen = set()
    while ticket.merged_into_id is not None and ticket.id not in seen:
        seen.add(ticket.id)
        ticket = session.get(Ticket, ticket.merged_into_id)
    return ticket


def ticket_by_references(session: Session, msg: ParsedMessage) -> Ticket | None:
    """The ticket of the newest referenced Message-ID maild knows."""
    ids = [*msg.in_reply_to, *reversed(msg.references)]
    if not ids:
        return None
    known = batch_of(session).ticket_ids(session, ids)
    for mid in ids:
        if mid in known:
            ticket = known[mid]
            if not isinstance(ticket, Ticket):
                ticket = session.get(Ticket, ticket)
            return resolve_merged(session, ticket)
    return None


def ticket_by_number(session: Session, number: str) -> Ticket | None:
    ticket = session.scalar(select(Ticket).where(Ticket.number == number))
    return None if ticket is None else resolve_merged(session, ticket)
