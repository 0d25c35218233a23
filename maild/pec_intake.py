"""PEC (posta elettronica certificata) in the pipeline: envelopes opened, receipts recorded.

(Stub: filled in by the Italian-mail work, issue 6.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from maild.classify import Decision
    from maild.ingest import Context
    from maild.message import ParsedMessage


def open_envelope(msg: ParsedMessage) -> ParsedMessage:
    """A PEC transport envelope becomes the message it carries; anything else is returned."""
    return msg


def rule_pec_receipt(ctx: Context, msg: ParsedMessage) -> Decision | None:
    return None


HANDLERS: dict = {}
