"""Backup reports in the pipeline. (Stub: filled in by the backup-control work, issue 5.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from maild.classify import Decision
    from maild.ingest import Context
    from maild.message import ParsedMessage


def rule_backup_report(ctx: Context, msg: ParsedMessage) -> Decision | None:
    return None


HANDLERS: dict = {}
