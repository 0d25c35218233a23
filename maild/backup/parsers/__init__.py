"""Backup-report recognition: one small parser module per product, tried in turn.

Each product module has `MARKERS` (a cheap regex: does the mail mention the product at
all?) and `parse(mail: ReportMail) -> BackupReport | None`, which requires the product's
structure (sender/subject pattern and body layout), not just a keyword.
"""

from __future__ import annotations

import email.message
import re
from collections.abc import Sequence

import structlog

from maild.backup.generic import GenericRule
from maild.backup.parsers import (
    acronis,
    bacula,
    cobian,
    cron,
    duplicati,
    iperius,
    qnap,
    synology,
    uranium,
    veeam,
    wsb,
)
from maild.backup.parsers.mail import ReportMail, report_views
from maild.backup.report import BackupReport

log = structlog.get_logger(__name__)

PARSERS = (veeam, iperius, uranium, wsb, acronis, synology, qnap, bacula, cobian, duplicati, cron)

# Only the head of a body is scanned for markers: reports name their product early, and a
# long human thread must not cost a full scan per product.
_MARKER_SCAN = 20_000


def _any_marker() -> re.Pattern[str]:
    """All products' markers in one pattern: an ordinary mail is rejected in one scan."""
    parts = []
    for parser in PARSERS:
        flags = ("i" if parser.MARKERS.flags & re.I else "") + (
            "m" if parser.MARKERS.flags & re.M else ""
        )
        parts.append(f"(?{flags}:{parser.MARKERS.pattern})" if flags else parser.MARKERS.pattern)
    return re.compile("|".join(parts))


ANY_MARKER = _any_marker()

# Every product's MARKERS needs one of these words: a plain substring test rejects an
# ordinary mail far faster than the regular expressions (3 ms -> 0.05 ms on 20 kB).
# A new parser whose markers lack all of them must add its word here.
_KEYWORDS = (
    "backup", "backing up", "acronis", "bacula", "bareos", "cobian", "cron", "duplicati",
    "parsedresult", "iperius", "hbs", "uranium", "veeam", "wbadmin",
)  # fmt: skip


def mentions_a_product(text: str) -> bool:
    """Whether any product's markers may match `text` (then ANY_MARKER tells for sure)."""
    low = text.lower()
    return any(k in low for k in _KEYWORDS) and ANY_MARKER.search(text) is not None


def parse_view(mail: ReportMail, generic_rules: Sequence[GenericRule] = ()) -> BackupReport | None:
    haystack = f"{mail.sender}\n{mail.subject}\n{mail.text[:_MARKER_SCAN]}"
    for parser in PARSERS if mentions_a_product(haystack) else ():
        if not parser.MARKERS.search(haystack):
            continue
        try:
            report = parser.parse(mail)
        except Exception:  # a parser bug must not stop the mail pipeline
            log.exception("backup parser failed", parser=parser.__name__, subject=mail.subject)
            continue
        if report is not None:
            return report
    for rule in generic_rules:
        report = rule.match(mail)
        if report is not None:
            return report
    return None


def parse_report(
    msg: email.message.Message, generic_rules: Sequence[GenericRule] = ()
) -> BackupReport | None:
    """The backup report carried by `msg` (directly or forwarded), else None.

    Auto-replies and replies in a conversation are never reports, nor are person-written
    mails that merely talk about backups.
    """
    for mail in report_views(msg):
        report = parse_view(mail, generic_rules)
        if report is not None:
            return report
    return None
