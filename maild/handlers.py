"""Handlers: what maild does for each route of the classifier, inside the message's
transaction. Each returns (outcome, ticket)."""

from __future__ import annotations

from collections.abc import Callable

from maild import facts, quoting, subject
from maild.classify import Decision, Route
from maild.ingest import Context, ack_allowed
from maild.message import ParsedMessage
from maild.models import CHIUSO, Ticket
from maild.notify import Outgoing
from maild.operators import lifecycle
from maild.sla.deadline import take_charge_due
from maild.sla.priority import strip_priority_tag
from maild.tickets import create_ticket, record_event

Handler = Callable[[Context, ParsedMessage, Decision], tuple[str, Ticket | None]]


def take_charge_hours(ctx: Context, priority: str) -> float:
    return ctx.cfg.sla.take_charge_hours[priority]


def _sender_label(msg: ParsedMessage) -> str:
    return f"{msg.sender.name} <{msg.sender.email}>" if msg.sender.name else msg.sender.email


def handle_new(ctx: Context, msg: ParsedMessage, decision: Decision) -> tuple[str, Ticket]:
    cfg = ctx.cfg
    ente = cfg.ente_for(msg.sender.email)
    if ente is None and cfg.service.unknown_senders == "reject" and not decision.bulk:
        subj, text, html = ctx.rt.notifier.render("unknown_sender", subject=msg.subject)
        if ack_allowed(ctx, msg.sender.email):
            ctx.enqueue(
                Outgoing(
                    kind="ack",
                    to=[msg.sender.email],
                    subject=subj,
                    text=text,
                    html=html,
                    in_reply_to=msg.message_id,
                    references=[msg.message_id] if msg.message_id else [],
                    auto_submitted="auto-replied",
                    rate_key=msg.sender.email,
                )
            )
        return "rejected_unknown_sender", None

    priority = facts.requested_priority(msg, cfg) or cfg.service.default_priority
    local_year = ctx.now.astimezone(cfg.service.tz).year
    ticket = create_ticket(
        ctx.session,
        number_format=cfg.service.number_format,
        now=ctx.now,
        local_year=local_year,
        title=strip_priority_tag(subject.title_of(msg.subject, cfg.service.tag_word)),
        requester_email=msg.sender.email,
        requester_name=msg.sender.name,
        ente=ente.name if ente else None,
        priority=priority,
        origin_message_id=msg.message_id,
        flush=False,  # written with the batch's other rows
    )
    ticket.sla_due_at = take_charge_due(cfg, ente, priority, ctx.now)
    _add_watchers(ctx, ticket, msg)
    for key in ("previous_ticket", "attempted_ticket"):
        if key in decision.info:  # a closed ticket's reply, or a stranger's use of a tag
            record_event(ctx.session, ticket, ctx.now, "maild", key, None, decision.info[key])
    ctx.store_article(ticket, msg, msg.text)
    refs = [msg.message_id] if msg.message_id else []
    if not decision.bulk and ack_allowed(ctx, msg.sender.email):
        ctx.enqueue(
            Outgoing(
                kind="ack",
                ticket=ticket,
                to=[msg.sender.email],
                template="ack",  # rendered by the sender (maild.draft)
                context={
                    "ticket": ticket,
                    "hours": take_charge_hours(ctx, ticket.priority),
                    "ente": ente,
                },
                in_reply_to=msg.message_id,
                references=refs,
                auto_submitted="auto-replied",
                rate_key=msg.sender.email,
            )
        )
    _operator_copy(ctx, msg, ticket, "operator_copy", msg.text, decision)
    return "new_ticket", ticket


def _operator_copy(
    ctx: Context,
    msg: ParsedMessage,
    ticket: Ticket,
    kind: str,
    body: str,
    decision: Decision,
) -> None:
    """A copy to the operators (or the assignee) that they can answer in-thread."""
    to = ticket.assignee or ctx.cfg.service.operators_address
    ctx.enqueue(
        Outgoing(
            kind=kind,
            ticket=ticket,
            to=[to],
            template=kind,  # rendered by the sender (maild.draft)
            context={
                "ticket": ticket,
                "sender": _sender_label(msg),
                "body": body,
                "decision": {"bulk": decision.bulk, "info": _template_info(decision)},
                "hours": take_charge_hours(ctx, ticket.priority),
            },
            from_name=msg.sender.name or msg.sender.email,
            in_reply_to=msg.message_id,
            references=[r for r in (ticket.origin_message_id, msg.message_id) if r],
            # stored with the article: the blob is there already
            attachments=[(a.filename, a.content_type, a.sha256 or a.data) for a in msg.attachments],
        )
    )


def _template_info(decision: Decision) -> dict[str, str]:
    """What the copies' templates read of the decision (plain values, for the draft)."""
    keys = ("attempted_ticket", "previous_ticket", "status_change")
    return {k: decision.info[k] for k in keys if isinstance(decision.info.get(k), str)}


def handle_follow_up(ctx: Context, msg: ParsedMessage, decision: Decision) -> tuple[str, Ticket]:
    ticket = decision.ticket
    assert ticket is not None
    sender = msg.sender.email
    change = ""
    if ctx.cfg.operator_by_email(sender) is None and not decision.bulk:
        lifecycle.lock(ctx, ticket)
        # in attesa -> in carico; resolved -> reopened within the warranty, else closed
        change = lifecycle.requester_replied(ctx, ticket, sender)
    if change == "closed" or (decision.bulk and ticket.status == CHIUSO):
        info = {"previous_ticket": ticket.number}
        reason = f"reply to closed ticket {ticket.number}"
        return handle_new(ctx, msg, Decision(Route.NEW, None, reason, decision.bulk, info))
    decision.info["status_change"] = change
    body = quoting.new_text(msg.text, msg.html)
    ctx.store_article(ticket, msg, body)
    if sender == ticket.requester_email:
        _add_watchers(ctx, ticket, msg)
    _operator_copy(ctx, msg, ticket, "follow_up_copy", body, decision)
    return "follow_up", ticket


def _add_watchers(ctx: Context, ticket: Ticket, msg: ParsedMessage) -> None:
    """Whom the requester writes to besides us follows the ticket (when configured)."""
    cfg = ctx.cfg
    if not cfg.lifecycle.watchers:
        return
    own = cfg.service.own_addresses
    new = [
        a.email
        for a in (*msg.to, *msg.cc)
        if a.email not in own
        and a.email != ticket.requester_email
        and cfg.operator_by_email(a.email) is None
    ]
    merged = list(dict.fromkeys([*(ticket.watchers or []), *new]))
    if merged != list(ticket.watchers or []):
        ticket.watchers = merged  # a new list: JSON columns do not track in-place changes


def handle_bounce(
    ctx: Context, msg: ParsedMessage, decision: Decision
) -> tuple[str, Ticket | None]:
    ticket = decision.ticket
    if ticket is None:
        return "bounce_unmatched", None
    info = decision.info.get("bounce")
    failed = ", ".join(info.failed_recipients) if info and info.failed_recipients else ""
    # what an operator needs first: who did not get our mail, and why
    summary = f"[Mancato recapito] {failed or 'destinatario non indicato'}"
    if info is not None and (info.status or info.diagnostic):
        summary += f" - {' '.join(x for x in (info.status, info.diagnostic) if x)}"
    ctx.store_article(ticket, msg, f"{summary}\n\n{msg.text}", internal=True)
    record_event(ctx.session, ticket, ctx.now, msg.sender.email, "bounce", None, failed or None)
    return "bounce", ticket


def handle_auto_reply(
    ctx: Context, msg: ParsedMessage, decision: Decision
) -> tuple[str, Ticket | None]:
    """Out-of-office and the like: kept on the ticket for the record, status untouched."""
    ticket = decision.ticket
    if ticket is None:
        return "auto_reply", None
    ctx.store_article(ticket, msg, msg.text, internal=True)
    return "auto_reply", ticket


def handle_loop(ctx: Context, msg: ParsedMessage, decision: Decision) -> tuple[str, None]:
    return "loop", None


def all_handlers() -> dict[str, Handler]:
    from maild import pec_intake
    from maild.backup import intake as backup_intake
    from maild.operators import intake as operator_intake

    return {
        Route.NEW: handle_new,
        Route.FOLLOW_UP: handle_follow_up,
        Route.BOUNCE: handle_bounce,
        Route.AUTO_REPLY: handle_auto_reply,
        Route.LOOP: handle_loop,
        **pec_intake.HANDLERS,
        **backup_intake.HANDLERS,
        **operator_intake.HANDLERS,
    }
