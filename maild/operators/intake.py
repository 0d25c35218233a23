"""Operator replies, commands and status requests in the pipeline.

Rules (in `classify.default_rules`, after the machines and before follow-ups):
- `rule_status_request`: "stato" / "i miei ticket" / "status" as subject, or a reply whose
  first line is `#stato` from a requester -> the list of the sender's open tickets.
- `rule_operator`: mail from a configured operator on a ticket (or to the comment address).
Handlers run in the message's transaction, like every other handler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from maild import quoting, subject
from maild.classify import Decision, find_ticket
from maild.config import EnteConfig, OperatorConfig
from maild.models import IN_ATTESA, OPEN_STATUSES, RISOLTO, Ticket
from maild.notify import Outgoing
from maild.operators import lifecycle, notices
from maild.operators.auth import authentication_failures
from maild.operators.commands import (
    PRIORITIES,
    PRIORITY_WORDS,
    STATUS_WORDS,
    STATUSES,
    SYNTAX,
    CommandError,
    OperatorText,
    fold,
    is_status_request_line,
    parse_operator_text,
)
from maild.operators.lifecycle import Change
from maild.tickets import (
    record_event,
    remember_message_id,
    ticket_by_number,
)

if TYPE_CHECKING:
    from maild.ingest import Context
    from maild.message import ParsedMessage

STATUS_REQUEST = "status_request"
OPERATOR_REPLY = "operator_reply"
_TRAILING_PUNCT = re.compile(r"[\s?!.:;]+$")


# -- rules --------------------------------------------------------------------------------


def rule_status_request(ctx: Context, msg: ParsedMessage) -> Decision | None:
    wanted = {fold(s) for s in ctx.cfg.lifecycle.status_subjects}
    title = _TRAILING_PUNCT.sub("", fold(subject.strip_prefixes(msg.subject)))
    if title in wanted:
        return Decision(STATUS_REQUEST, reason=f"status request (subject {msg.subject!r})")
    if "#stat" not in msg.text.lower() or ctx.cfg.operator_by_email(msg.sender.email):
        return None  # cheap test first; operators' #stato is a command
    if is_status_request_line(quoting.new_text(msg.text, msg.html)):
        return Decision(STATUS_REQUEST, reason="status request (#stato)")
    return None


def rule_operator(ctx: Context, msg: ParsedMessage) -> Decision | None:
    op = ctx.cfg.operator_by_email(msg.sender.email)
    if op is None:
        return None
    comment = ctx.cfg.service.comment_address
    to_comment = comment is not None and comment in {a.email for a in (*msg.to, *msg.cc)}
    ticket = find_ticket(ctx, msg)
    if ticket is None and not to_comment:
        return None  # an operator opening a ticket for someone: a new request
    failures = authentication_failures(
        msg.header_all("Authentication-Results"), ctx.cfg.service.trusted_authserv_id
    )
    return Decision(
        OPERATOR_REPLY,
        ticket=ticket,
        reason=f"operator {op.email}" + (" (untrusted)" if failures else ""),
        info={"operator": op, "comment": to_comment, "auth_failures": failures},
    )


# -- status request -------------------------------------------------------------------------


def handle_status_request(ctx: Context, msg: ParsedMessage, decision: Decision):
    sender = msg.sender.email
    tickets = ctx.session.scalars(
        select(Ticket)
        .where(
            Ticket.requester_email == sender,
            Ticket.status.in_(OPEN_STATUSES),
            Ticket.merged_into_id.is_(None),
        )
        .order_by(Ticket.id)
    ).all()
    since = ctx.now - timedelta(hours=1)
    recent = ctx.rt.notifier.recent_count(ctx.session, STATUS_REQUEST, sender, since)
    if recent >= ctx.cfg.service.ack_rate_limit:  # same limit as acknowledgements
        return "status_request_limited", None
    rows = [{"ticket": t, "assignee": notices.operator_name(ctx, t.assignee)} for t in tickets]
    subj, text, html = ctx.rt.notifier.render("status_answer", rows=rows, sender=sender)
    ctx.enqueue(
        Outgoing(
            kind=STATUS_REQUEST,
            to=[sender],
            subject=subj,
            text=text,
            html=html,
            in_reply_to=msg.message_id,
            references=[*msg.references, *([msg.message_id] if msg.message_id else [])],
            auto_submitted="auto-replied",
            rate_key=sender,
        )
    )
    return "status_request", None


# -- operator replies ------------------------------------------------------------------------


@dataclass
class Plan:
    """Commands checked against the ticket and the configuration, ready to apply."""

    assignee: OperatorConfig | None = None
    take: bool = False
    priority: str | None = None
    status: str | None = None
    category: str | None = None
    ente: EnteConfig | None = None
    merge_into: Ticket | None = None


def handle_operator_reply(ctx: Context, msg: ParsedMessage, decision: Decision):
    op: OperatorConfig = decision.info["operator"]
    ticket = decision.ticket
    if ticket is None:  # to the comment address, but on no ticket we know
        notices.to_operator(
            ctx,
            None,
            op.email,
            "command_error",
            reply_to=msg,
            errors=[CommandError(msg.subject, "no_ticket")],
            syntax=SYNTAX,
        )
        return "operator_no_ticket", None
    lifecycle.lock(ctx, ticket)
    body = quoting.new_text(msg.text, msg.html)

    failures = decision.info["auth_failures"]
    if failures:
        return _untrusted(ctx, msg, ticket, op, body, failures)

    parsed = parse_operator_text(body)
    if decision.info["comment"] and parsed.note is None:
        parsed.note, parsed.public = parsed.public, ""  # the comment address: all is a note
    plan, errors = _validate(ctx, ticket, parsed)
    if errors:
        notices.to_operator(
            ctx, ticket, op.email, "command_error", reply_to=msg, errors=errors, syntax=SYNTAX
        )
        return "operator_command_error", ticket

    changes = _apply(ctx, msg, ticket, op, parsed, plan)
    if parsed.commands:
        notices.to_operator(
            ctx, ticket, op.email, "command_confirmation", reply_to=msg, changes=changes
        )
    if parsed.note is not None:
        return "operator_note", ticket
    return ("operator_reply" if parsed.public else "operator_commands"), ticket


def _untrusted(ctx, msg, ticket, op, body, failures):
    """Kept for the operators to read, nothing executed, the real operator warned."""
    ctx.store_article(ticket, msg, body, internal=True)
    record_event(ctx.session, ticket, ctx.now, op.email, "untrusted", None, ", ".join(failures))
    since = ctx.now - timedelta(hours=1)
    recent = ctx.rt.notifier.recent_count(ctx.session, "operator_untrusted", op.email, since)
    if recent < max(ctx.cfg.service.ack_rate_limit, 1):
        notices.to_operator(
            ctx,
            ticket,
            op.email,
            "operator_untrusted",
            reply_to=msg,
            failures=failures,
            rate_key=op.email,
        )
    return "operator_untrusted", ticket


def _validate(ctx: Context, ticket: Ticket, parsed: OperatorText):
    """Every command checked before any is applied: one wrong value changes nothing."""
    plan = Plan()
    errors = list(parsed.errors)
    for cmd in parsed.commands:
        value = fold(cmd.arg)
        if cmd.name == "take":
            plan.take = True
        elif cmd.name == "assign":
            found, choices = _find_operator(ctx, cmd.arg)
            if found is None:
                errors.append(CommandError(cmd.line, _problem(cmd.arg), choices))
            plan.assignee = found
        elif cmd.name == "priority":
            plan.priority = PRIORITIES.get(value)
            if plan.priority is None:
                errors.append(CommandError(cmd.line, _problem(value), PRIORITY_WORDS))
        elif cmd.name == "status":
            plan.status = STATUSES.get(" ".join(value.split()))
            if plan.status is None:
                errors.append(CommandError(cmd.line, _problem(value), STATUS_WORDS))
        elif cmd.name == "category":
            parts = [" ".join(p.split()) for p in cmd.arg.split("/")]
            if not cmd.arg or len(parts) > 2 or not all(parts) or len(cmd.arg) > 200:
                errors.append(
                    CommandError(cmd.line, _problem(cmd.arg), ("categoria/sottocategoria",))
                )
            plan.category = "/".join(parts)
        elif cmd.name == "ente":
            plan.ente = _find_ente(ctx, cmd.arg)
            if plan.ente is None:
                names = tuple(e.name for e in ctx.cfg.ente)
                errors.append(CommandError(cmd.line, _problem(cmd.arg), names))
        elif cmd.name == "merge":
            number = cmd.arg.strip().strip("[]#").split("#")[-1].strip()
            target = ticket_by_number(ctx.session, number) if number else None
            if target is None:
                errors.append(CommandError(cmd.line, _problem(number, "not_found")))
            elif target.id == ticket.id:
                errors.append(CommandError(cmd.line, "same_ticket"))
            plan.merge_into = target
        elif cmd.name == "note" and not (parsed.note or "").strip():
            errors.append(CommandError(cmd.line, "missing_value"))
    return plan, errors


def _problem(value: str, otherwise: str = "bad_value") -> str:
    return "missing_value" if not value.strip() else otherwise


def _find_operator(ctx: Context, arg: str) -> tuple[OperatorConfig | None, tuple[str, ...]]:
    choices = tuple(f"{o.name} <{o.email}>" for o in ctx.cfg.operator)
    want = fold(" ".join(arg.split()).strip("<>"))
    if not want:
        return None, choices
    for o in ctx.cfg.operator:
        if want in (o.email, fold(o.name)):
            return o, choices
    partial = [o for o in ctx.cfg.operator if want in fold(o.name).split() or want in fold(o.name)]
    return (partial[0] if len(partial) == 1 else None), choices


def _find_ente(ctx: Context, arg: str) -> EnteConfig | None:
    want = fold(" ".join(arg.split()))
    if not want:
        return None
    exact = ctx.cfg.ente_by_name(arg)
    if exact is not None:
        return exact
    partial = [e for e in ctx.cfg.ente if want in fold(e.name)]
    return partial[0] if len(partial) == 1 else None


def _apply(
    ctx: Context,
    msg: ParsedMessage,
    ticket: Ticket,
    op: OperatorConfig,
    parsed: OperatorText,
    plan: Plan,
) -> list[Change]:
    actor = op.email
    changes: list[Change] = []
    if plan.take:
        changes += lifecycle.take_charge(ctx, ticket, op, actor)
    if plan.assignee is not None:
        changes += lifecycle.take_charge(ctx, ticket, plan.assignee, actor)
    if plan.ente is not None:
        changes += lifecycle.set_ente(ctx, ticket, plan.ente, actor)
    if plan.priority is not None:
        changes += lifecycle.set_priority(ctx, ticket, plan.priority, actor)
    if plan.category is not None:
        changes += lifecycle.set_category(ctx, ticket, plan.category, actor)

    public = parsed.public
    # answering, asking or solving is taking charge; closing (spam, duplicates) is not
    acting_publicly = bool(public) or plan.status in (IN_ATTESA, RISOLTO)
    if acting_publicly and ticket.assignee is None:
        changes += lifecycle.take_charge(ctx, ticket, op, actor)  # the presa in carico

    if parsed.note is not None:
        ctx.store_article(ticket, msg, parsed.note, internal=True, direction="note")
        changes.append(Change("note", None, _first_line(parsed.note)))
    elif public:
        ctx.store_article(ticket, msg, public, direction="out")
    elif not parsed.commands:  # nothing written (an empty reply): keep it for the record
        ctx.store_article(ticket, msg, body_or_empty(msg), internal=True)
    else:
        _remember(ctx, msg, ticket)
    attachments = [(a.filename, a.content_type, a.sha256 or a.data) for a in msg.attachments]

    if plan.status == RISOLTO:
        change = lifecycle.set_status(ctx, ticket, RISOLTO, actor)
        if change is not None:
            changes.append(change)
            days = ctx.cfg.lifecycle.warranty_working_days
            notices.to_requester(
                ctx, ticket, "resolution_notice", from_name=op.name, attachments=attachments,
                operator=op, body=public, days=days, auto=False,
            )  # fmt: skip
            public = ""  # the resolution notice carried it
    if public:
        notices.to_requester(
            ctx, ticket, "operator_reply", from_name=op.name, attachments=attachments,
            operator=op, body=public, auto=False,
        )  # fmt: skip
        changes.append(Change("reply", None, ticket.requester_email))
    if plan.status is not None and plan.status != RISOLTO:
        change = lifecycle.set_status(ctx, ticket, plan.status, actor)
        if change is not None:
            changes.append(change)
    if plan.merge_into is not None:
        changes += lifecycle.merge_into(ctx, ticket, plan.merge_into, actor)
    return changes


def body_or_empty(msg: ParsedMessage) -> str:
    return quoting.new_text(msg.text, msg.html)


def _remember(ctx: Context, msg: ParsedMessage, ticket: Ticket) -> None:
    """A commands-only reply stores no article; its Message-ID still threads."""
    if msg.message_id:
        remember_message_id(ctx.session, msg.message_id, ticket.id)


def _first_line(text: str) -> str:
    for line in text.split("\n"):
        if line.strip():
            return line.strip()[:200]
    return ""


HANDLERS: dict = {
    STATUS_REQUEST: handle_status_request,
    OPERATOR_REPLY: handle_operator_reply,
}
