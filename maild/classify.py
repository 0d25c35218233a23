"""Classification: which kind of mail is this? A chain of small rules, first match wins.

Each rule looks at the parsed message (and may look tickets up) and returns a Decision or
None. The order is the order of trust: our own mail first (loops), then machines (bounces,
auto-replies, backup software), then people (operators, follow-ups, new requests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from maild import autodetect, facts, subject
from maild.config import Config
from maild.models import Ticket
from maild.tickets import ticket_by_number, ticket_by_references

if TYPE_CHECKING:
    from maild.ingest import Context
    from maild.message import ParsedMessage


class Route(StrEnum):
    LOOP = "loop"
    BOUNCE = "bounce"
    AUTO_REPLY = "auto_reply"
    FOLLOW_UP = "follow_up"
    NEW = "new"


@dataclass
class Decision:
    route: str
    ticket: Ticket | None = None
    reason: str = ""
    bulk: bool = False  # automatic but not a reply: a ticket, never an acknowledgement
    info: dict[str, Any] = field(default_factory=dict)


Rule = Callable[["Context", "ParsedMessage"], Decision | None]


def find_ticket(ctx: Context, msg: ParsedMessage) -> Ticket | None:
    """By In-Reply-To/References to a Message-ID maild knows, else by the subject tag."""
    ticket = ticket_by_references(ctx.session, msg)
    if ticket is None:
        number = subject.find_ticket_tag(msg.subject, ctx.cfg.service.tag_word)
        if number is not None:
            ticket = ticket_by_number(ctx.session, number)
    return ticket


def rule_loop(ctx: Context, msg: ParsedMessage) -> Decision | None:
    own = ctx.cfg.service.own_addresses
    if msg.sender.email in own:
        return Decision(Route.LOOP, reason=f"sent by our own address {msg.sender.email}")
    for value in msg.header_all("X-Loop"):
        if value.strip().lower() in own:
            return Decision(Route.LOOP, reason="X-Loop names us")
    return None


def rule_automatic(ctx: Context, msg: ParsedMessage) -> Decision | None:
    kind = facts.auto_kind(msg)
    if kind is None:
        return None
    if kind == autodetect.AutoKind.BOUNCE:
        info = facts.bounce(msg)
        ticket = None
        if info is not None and info.original_message_id:
            ticket = ticket_by_references(
                ctx.session,
                _refs_only(msg, [info.original_message_id]),
            )
        if ticket is None:
            ticket = find_ticket(ctx, msg)
        return Decision(Route.BOUNCE, ticket=ticket, reason="bounce", info={"bounce": info})
    if kind == autodetect.AutoKind.AUTO_REPLY:
        return Decision(Route.AUTO_REPLY, ticket=find_ticket(ctx, msg), reason="auto-reply")
    # bulk or machine-generated but not a reply to us: still a request, never acknowledged
    decision = _follow_up_or_new(ctx, msg) or Decision(Route.NEW)
    decision.bulk = True
    decision.reason = decision.reason or f"automatic ({kind})"
    return decision


def rule_follow_up(ctx: Context, msg: ParsedMessage) -> Decision | None:
    """Only the ticket's people may add to it; anyone else quoting its tag or Message-ID
    gets a ticket of their own, and learns nothing of the other one."""
    return _follow_up_or_new(ctx, msg)


def _follow_up_or_new(ctx: Context, msg: ParsedMessage) -> Decision | None:
    ticket = find_ticket(ctx, msg)
    if ticket is None:
        return None
    if may_follow_up(ctx.cfg, ticket, msg.sender.email):
        return Decision(Route.FOLLOW_UP, ticket=ticket)
    return Decision(
        Route.NEW,
        reason=f"{msg.sender.email} may not write on ticket {ticket.number}",
        info={"attempted_ticket": ticket.number},
    )


def may_follow_up(cfg: Config, ticket: Ticket, sender: str) -> bool:
    """The requester, the watchers (To/Cc of the requester's mail), operators and, when
    configured, any address of the ticket's ente."""
    if sender == ticket.requester_email or cfg.operator_by_email(sender) is not None:
        return True
    if cfg.lifecycle.watchers and sender in (ticket.watchers or []):
        return True
    if cfg.lifecycle.same_ente_follow_up and ticket.ente:
        ente = cfg.ente_for(sender)
        return ente is not None and ente.name == ticket.ente
    return False


def rule_new(ctx: Context, msg: ParsedMessage) -> Decision | None:
    return Decision(Route.NEW)


def _refs_only(msg: ParsedMessage, ids: list[str]) -> ParsedMessage:
    from copy import copy

    clone = copy(msg)
    clone.in_reply_to = ids
    clone.references = []
    return clone


def default_rules() -> list[Rule]:
    # imported here: those modules build on this one
    from maild import pec_intake
    from maild.backup import intake as backup_intake
    from maild.operators import intake as operator_intake

    return [
        rule_loop,
        pec_intake.rule_pec_receipt,
        backup_intake.rule_backup_report,
        rule_automatic,
        operator_intake.rule_status_request,
        operator_intake.rule_operator,
        rule_follow_up,
        rule_new,
    ]


# messages are rewritten before classification (a PEC envelope becomes what it carries)
def preprocess(msg: ParsedMessage) -> ParsedMessage:
    from maild import pec_intake

    return pec_intake.open_envelope(msg)


def classify(ctx: Context, msg: ParsedMessage, rules: list[Rule] | None = None) -> Decision:
    for rule in rules or default_rules():
        decision = rule(ctx, msg)
        if decision is not None:
            return decision
    return Decision(Route.NEW)
