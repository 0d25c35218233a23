"""Operator replies, commands and status requests in the pipeline. (Stub: issue 3.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from maild.classify import Decision
    from maild.ingest import Context
    from maild.message import ParsedMessage


def rule_status_request(ctx: Context, msg: ParsedMessage) -> Decision | None:
    return None


def rule_operator(ctx: Context, msg: ParsedMessage) -> Decision | None:
    return None


HANDLERS: dict = {}
