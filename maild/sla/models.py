"""SLA state in the database: escalation levels fired, digests sent.

Exactly once across restarts and instances: a level is recorded in `sla_escalations`
(unique per ticket, target and level) by the check; its mails are queued in the
transaction that sets its `notified_at`. A digest is recorded in `sla_digests` (unique per
local day) in the transaction that queues it.

`Ticket.sla_check_at` says when the escalation check must next look at a ticket. Any
change to what the SLA clocks depend on (deadline, priority, status, taken/resolved time)
asks for a look at the next check, by the attribute events below, so code elsewhere that
creates tickets or changes them needs to know nothing about escalation.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import Date, ForeignKey, Index, Integer, String, UniqueConstraint, event
from sqlalchemy.orm import Mapped, mapped_column

from maild.models import Base, Ticket

# "look at it at the next check": earlier than any real instant, so these come first
CHECK_NOW = datetime(2000, 1, 1, tzinfo=UTC)

TAKE_CHARGE, RESOLUTION = "take_charge", "resolution"


class SlaEscalation(Base):
    """One escalation level reached by one ticket's clock: fired once, ever."""

    __tablename__ = "sla_escalations"
    __table_args__ = (
        UniqueConstraint("ticket_id", "target", "level"),
        Index("ix_sla_escalations_pending", "notified_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    target: Mapped[str] = mapped_column(String(20))  # take_charge | resolution
    level: Mapped[int] = mapped_column(Integer)  # percent of the target: 75, 100, 150
    priority: Mapped[str] = mapped_column(String(10))  # the priority in force when it fired
    fired_at: Mapped[datetime]
    # set in the transaction that queues the level's mails (NULL: still to be sent)
    notified_at: Mapped[datetime | None]


class SlaDigest(Base):
    """The daily digest of one local working day, sent once."""

    __tablename__ = "sla_digests"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    sent_at: Mapped[datetime]
    tickets: Mapped[int] = mapped_column(Integer, default=0)


def _ask_for_check(target: Ticket, value, oldvalue, initiator) -> None:
    if value is not oldvalue and value != oldvalue:
        target.sla_check_at = CHECK_NOW


for _attr in (
    Ticket.sla_due_at,
    Ticket.priority,
    Ticket.status,
    Ticket.taken_at,
    Ticket.resolved_at,
):
    event.listen(_attr, "set", _ask_for_check)
