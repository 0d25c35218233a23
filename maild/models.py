"""Database schema (SQLAlchemy 2). The database is the source of truth for everything."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator):
    """Aware datetimes in Python, UTC in the database (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime}


# Ticket statuses as stored and shown in JSON.
NUOVO, IN_CARICO, IN_ATTESA, RISOLTO, CHIUSO = (
    "nuovo",
    "in_carico",
    "in_attesa",
    "risolto",
    "chiuso",
)
OPEN_STATUSES = (NUOVO, IN_CARICO, IN_ATTESA)


class TicketCounter(Base):
    """Last number given per year: incremented inside the ticket's own transaction,
    so a rollback returns it and numbers stay gap-free."""

    __tablename__ = "ticket_counters"
    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        UniqueConstraint("year", "seq"),
        Index("ix_tickets_status_sla", "status", "sla_due_at"),
        Index("ix_tickets_requester", "requester_email", "status"),
        Index("ix_tickets_sla_check", "sla_check_at"),  # the escalation check reads only these
        Index("ix_tickets_assignee", "assignee", "status"),
        Index("ix_tickets_overdue", "overdue", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    year: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(998))
    status: Mapped[str] = mapped_column(String(20), default=NUOVO)
    priority: Mapped[str] = mapped_column(String(10), default="MEDIA")
    kind: Mapped[str] = mapped_column(String(20), default="richiesta")  # or "incidente"
    ente: Mapped[str | None] = mapped_column(String(200))
    requester_email: Mapped[str] = mapped_column(String(320))
    requester_name: Mapped[str] = mapped_column(String(320), default="")
    assignee: Mapped[str | None] = mapped_column(String(320))
    category: Mapped[str | None] = mapped_column(String(200))
    # the requester's first message: our mails thread on it for Outlook and Thunderbird
    origin_message_id: Mapped[str | None] = mapped_column(String(998))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    taken_at: Mapped[datetime | None]
    sla_due_at: Mapped[datetime | None]
    # when the SLA escalation check must next look at this ticket (maild.sla.escalation)
    sla_check_at: Mapped[datetime | None]
    overdue: Mapped[bool] = mapped_column(Boolean, default=False)  # scaduto: a deadline passed
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    watchers: Mapped[list] = mapped_column(JSON, default=list)

    articles: Mapped[list[Article]] = relationship(
        back_populates="ticket", order_by="Article.id", cascade="all, delete-orphan"
    )


class Article(Base):
    """One message on a ticket: inbound mail, outbound mail or internal note."""

    __tablename__ = "articles"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    direction: Mapped[str] = mapped_column(String(10))  # in | out | note
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    sender: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[list] = mapped_column(JSON, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    date: Mapped[datetime]
    message_id: Mapped[str | None] = mapped_column(String(998))
    body_text: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str | None] = mapped_column(Text)
    raw_sha256: Mapped[str | None] = mapped_column(String(64))  # the original, under state_dir
    created_at: Mapped[datetime]

    ticket: Mapped[Ticket] = relationship(back_populates="articles")
    attachments: Mapped[list[AttachmentRow]] = relationship(
        order_by="AttachmentRow.id", cascade="all, delete-orphan"
    )


class AttachmentRow(Base):
    __tablename__ = "attachments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    content_id: Mapped[str | None] = mapped_column(String(998))
    inline: Mapped[bool] = mapped_column(Boolean, default=False)


class MessageRef(Base):
    """Every Message-ID maild knows (received or sent) and its ticket: threading by headers."""

    __tablename__ = "message_refs"
    message_id: Mapped[str] = mapped_column(String(998), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)


class InboundMessage(Base):
    """Each message taken from a source, recorded in the same transaction as its effects:
    the key to exactly-once processing."""

    __tablename__ = "inbound_messages"
    __table_args__ = (UniqueConstraint("mailbox", "uidvalidity", "uid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    mailbox: Mapped[str] = mapped_column(String(200))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    uid: Mapped[int | None] = mapped_column(BigInteger)
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    raw_sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(40))  # new_ticket, follow_up, bounce, ...
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    detail: Mapped[str | None] = mapped_column(Text)


class OutboxMessage(Base):
    """A rendered outgoing mail, queued in the transaction that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_rate", "kind", "rate_key", "created_at"),
        Index("ix_outbox_claim", "status", "priority", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))  # ack, operator_copy, alert, ...
    # lower first: a requester waiting for an answer before an operator's copy
    priority: Mapped[int] = mapped_column(SmallInteger, default=5, server_default="5")
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    envelope_from: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[list] = mapped_column(JSON)
    rate_key: Mapped[str | None] = mapped_column(String(320))
    data: Mapped[bytes | None] = mapped_column(LargeBinary)  # as sent, when composed
    draft: Mapped[str | None] = mapped_column(Text)  # what to compose (maild.draft), JSON
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending|sent|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None]  # set while a sender holds the lease
    # which instance holds it (maild.outbox.lease_owner): a restarted one frees its own
    claimed_by: Mapped[str | None] = mapped_column(String(300))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class TicketEvent(Base):
    """The ticket's history: who changed what, when."""

    __tablename__ = "ticket_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(320))
    field: Mapped[str] = mapped_column(String(40))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)


from maild.backup import models as _backup_models  # noqa: E402,F401
from maild.sla import models as _sla_models  # noqa: E402,F401
