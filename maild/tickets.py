"""Tickets: numbering, creation, articles, finding the ticket a message belongs to."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from maild.blobs import BlobStore
from maild.message import ParsedMessage
from maild.models import (
    Article,
    AttachmentRow,
    MessageRef,
    Ticket,
    TicketCounter,
    TicketEvent,
)


def next_seq(session: Session, year: int) -> int:
    """The next number of `year`, taken inside the caller's transaction.

    The counter row is updated (so locked) until commit: concurrent creators queue on it,
    a rollback gives the number back, so numbers have no gaps and are never reused.
    """
    bump = (
        update(TicketCounter)
        .where(TicketCounter.year == year)
        .values(last_seq=TicketCounter.last_seq + 1)
        .returning(TicketCounter.last_seq)
    )
    seq = session.execute(bump).scalar_one_or_none()
    if seq is None:  # the year's first ticket (or a concurrent creator is making the row)
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        session.execute(
            insert(TicketCounter).values(year=year, last_seq=0).on_conflict_do_nothing()
        )
        seq = session.execute(bump).scalar_one()
    return seq


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
) -> Ticket:
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
    session.add(
        TicketEvent(
            ticket_id=ticket.id, at=at, actor=actor, field=field, old_value=old, new_value=new
        )
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
) -> Article:
    article = Article(
        ticket_id=ticket.id,
        direction=direction,
        internal=internal,
        sender=msg.sender.email[:320],
        recipients=[a.email for a in (*msg.to, *msg.cc)],
        subject=msg.subject,
        date=msg.date or now,
        message_id=msg.message_id,
        body_text=body_text,
        body_html=msg.html,
        raw_sha256=raw_sha256,
        created_at=now,
    )
    for att in msg.attachments:
        article.attachments.append(
            AttachmentRow(
                filename=att.filename[-255:],  # keep the extension
                content_type=att.content_type[:255],
                size=len(att.data),
                sha256=blobs.put(att.data),
                content_id=att.content_id[:998] if att.content_id else None,
                inline=att.inline,
            )
        )
    session.add(article)
    if msg.message_id:
        remember_message_id(session, msg.message_id, ticket.id)
    ticket.updated_at = now
    return article


def remember_message_id(session: Session, message_id: str, ticket_id: int) -> None:
    # no autoflush: the pending ticket and article are written once, at commit
    with session.no_autoflush:
        if session.get(MessageRef, message_id) is None:
            session.add(MessageRef(message_id=message_id, ticket_id=ticket_id))


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
    rows = dict(
        session.execute(
            select(MessageRef.message_id, MessageRef.ticket_id).where(
                MessageRef.message_id.in_(ids)
            )
        ).all()
    )
    for mid in ids:
        if mid in rows:
            return resolve_merged(session, session.get(Ticket, rows[mid]))
    return None


def ticket_by_number(session: Session, number: str) -> Ticket | None:
    ticket = session.scalar(select(Ticket).where(Ticket.number == number))
    return None if ticket is None else resolve_merged(session, ticket)
