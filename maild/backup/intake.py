"""Backup reports in the pipeline: recognised before the auto-reply rule, never acknowledged.

A report of a configured job goes to the job's history; failures and warnings become (or
extend) the job's incident; a success resolves it. A report of no configured job is
recorded as unknown. Person-written mail about backups is not a report (the parsers
reject it) and goes on down the chain as an ordinary request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from maild import facts
from maild.backup.config import generic_rules
from maild.backup.incidents import Unit, record_report, record_unknown
from maild.backup.jobs import match_job
from maild.backup.parsers import _MARKER_SCAN, mentions_a_product, parse_view
from maild.backup.parsers.mail import report_views
from maild.backup.report import BackupReport
from maild.classify import Decision
from maild.log import get_logger

if TYPE_CHECKING:
    from maild.config import Config
    from maild.ingest import Context
    from maild.message import ParsedMessage
    from maild.models import Ticket

log = get_logger("maild.backup")
ROUTE = "backup_report"


def read_report(cfg: Config, msg: ParsedMessage) -> tuple[BackupReport, set[str]] | None:
    """The report in `msg` (directly or forwarded) and the senders it came through: the
    original report's sender and, when forwarded, the forwarder. Read through
    maild.facts.backup_report, which keeps the answer."""
    if msg.email is None:
        return None
    rules = generic_rules(cfg)
    if not rules and not _may_be_report(msg):
        return None
    for view in report_views(msg.email):
        report = parse_view(view, rules)
        if report is not None:
            return report, {view.sender_addr, msg.sender.email} - {""}
    return None


def _may_be_report(msg: ParsedMessage) -> bool:
    """Cheap test on the already decoded message: does any product's marker appear? The
    common case, a person's request, then skips decoding the MIME tree again per view."""
    if any(a.content_type == "message/rfc822" for a in msg.attachments):
        return True  # a forwarded report: only the full path looks inside
    head = f"{msg.sender.email}\n{msg.subject}\n{msg.text[:_MARKER_SCAN]}\n{(msg.html or '')[:_MARKER_SCAN]}"
    return mentions_a_product(head)


def rule_backup_report(ctx: Context, msg: ParsedMessage) -> Decision | None:
    found = facts.backup_report(msg, ctx.cfg)
    if found is None:
        return None
    report, senders = found
    job = match_job(ctx.cfg, report, senders)
    reason = f"backup report: {report.product} {report.job or report.host} {report.status}"
    return Decision(ROUTE, reason=reason, info={"report": report, "job": job})


def handle_backup_report(
    ctx: Context, msg: ParsedMessage, decision: Decision
) -> tuple[str, Ticket | None]:
    report: BackupReport = decision.info["report"]
    job = decision.info["job"]
    unit = Unit(ctx.rt, ctx.session, ctx.now)
    if job is None:
        log.info("backup_report_unknown_job", product=report.product, job=report.job)
        return record_unknown(unit, report, msg, ctx.raw_sha256), None
    return record_report(unit, job, report, msg, ctx.raw_sha256)


HANDLERS: dict = {ROUTE: handle_backup_report}
