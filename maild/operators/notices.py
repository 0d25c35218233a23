"""Mails of the operator workflow, queued in the message's transaction.

Mail to the requester threads on the requester's own conversation (their first message and
the last one they sent), so Outlook and Thunderbird show the whole exchange together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from maild.models import Article, Ticket
from maild.notify import Outgoing

if TYPE_CHECKING:
    from maild.config import OperatorConfig
    from maild.ingest import Context
    from maild.message import ParsedMessage


def operator_name(ctx: Context, email: str | None) -> str | None:
    if not email:
        return None
    op = ctx.cfg.operator_by_email(email)
    return op.name if op else email


def requester_thread(ctx: Context, ticket: Ticket) -> tuple[str | None, list[str]]:
    """(In-Reply-To, References) placing our mail in the requester's conversation."""
    people = [ticket.requester_email, *(ticket.watchers or [])]
    last = ctx.session.scalar(
        select(Article.message_id)
        .where(
            Article.ticket_id == ticket.id,
            Article.direction == "in",
            Article.internal.is_(False),
            Article.sender.in_(people),
            Article.message_id.is_not(None),
        )
        .order_by(Article.id.desc())
        .limit(1)
    )
    refs = [r for r in dict.fromkeys([ticket.origin_message_id, last]) if r]
    return (last or ticket.origin_message_id), refs


def watchers_of(ticket: Ticket) -> list[str]:
    return [w for w in (ticket.watchers or []) if w != ticket.requester_email]


def to_requester(
    ctx: Context,
    ticket: Ticket,
    kind: str,
    *,
    from_name: str | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
    auto: bool = True,
    **template: Any,
) -> None:
    """A notice (or an operator's words) to the requester, the watchers in Cc."""
    subj, text, html = ctx.rt.notifier.render(kind, ticket=ticket, **template)
    in_reply_to, refs = requester_thread(ctx, ticket)
    ctx.enqueue(
        Outgoing(
            kind=kind,
            ticket=ticket,
            to=[ticket.requester_email],
            cc=watchers_of(ticket),
            subject=subj,
            text=text,
            html=html,
            from_name=from_name,
            in_reply_to=in_reply_to,
            references=refs,
            auto_submitted="auto-generated" if auto else None,
            attachments=list(attachments),
        )
    )


def to_operator(
    ctx: Context,
    ticket: Ticket | None,
    to: str,
    kind: str,
    *,
    reply_to: ParsedMessage | None = None,
    rate_key: str | None = None,
    **template: Any,
) -> None:
    """A notice to one operator, threaded on the message it answers when there is one."""
    subj, text, html = ctx.rt.notifier.render(kind, ticket=ticket, **template)
    refs: list[str] = []
    if ticket is not None and ticket.origin_message_id:
        refs.append(ticket.origin_message_id)
    if reply_to is not None:
        refs += [*reply_to.references, *([reply_to.message_id] if reply_to.message_id else [])]
    ctx.enqueue(
        Outgoing(
            kind=kind,
            ticket=ticket,
            to=[to],
            subject=subj,
            text=text,
            html=html,
            in_reply_to=reply_to.message_id if reply_to is not None else None,
            references=refs,
            auto_submitted="auto-replied" if reply_to is not None else "auto-generated",
            rate_key=rate_key,
        )
    )


def operator_label(op: OperatorConfig) -> str:
    return f"{op.name} <{op.email}>"


__all__ = [
    "operator_label",
    "operator_name",
    "requester_thread",
    "to_operator",
    "to_requester",
    "watchers_of",
]
