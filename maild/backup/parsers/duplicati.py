"""Duplicati `--send-mail-*` reports (FORMATS.md 3.12).

Default subject `Duplicati %OPERATIONNAME% report for %backup-name%`; body = the result as
`Key: Value` lines (`ParsedResult`, `MainOperation`, `BeginTime`, `EndTime`, ...) and
bracketed `Warnings: [...]` / `Errors: [...]` lists. Times read `3/12/2025 11:00:09 PM
(1741816809)`: the epoch in parentheses is used, the text follows the server's locale.
The body never names the machine.
"""

from __future__ import annotations

import re

from maild.backup.parsers.common import epoch_to_local, parse_mdy, summary
from maild.backup.parsers.mail import ReportMail
from maild.backup.report import BackupReport

MARKERS = re.compile(r"\bduplicati\b|^ParsedResult:", re.I | re.M)
# lower-case substrings one of which every MARKERS match contains (a quick pre-test)
NEEDLES = ("duplicati", "parsedresult:")

_RESULTS = {"success": "success", "warning": "warning", "error": "failure", "fatal": "failure"}
_SUBJECT_JOB = re.compile(r"\breport for (.+?)\s*$", re.I)
_ENTRY = re.compile(r"^\s*\S.*? - \[(?:Warning|Error)-[^\]]*\]:\s*", re.M)


def _time(value: str | None):
    if not value:
        return None
    epoch = re.search(r"\((\d{9,11})\)", value)
    return epoch_to_local(int(epoch.group(1))) if epoch else parse_mdy(value)


def _entries(text: str, name: str) -> list[str]:
    """The messages of a bracketed list (`Errors: [ ... ]`), each on one line."""
    m = re.search(rf"^{name}:\s*\[(.*?)^\]", text, re.M | re.S)
    if not m:
        return []
    parts = _ENTRY.split(m.group(1))
    lines = []
    for part in parts[1:]:
        # a message may continue over several lines (exception class, stack trace)
        lines.append(": ".join(line.strip().rstrip(",") for line in part.strip().split("\n")[:2]))
    return [line for line in lines if line]


def parse(mail: ReportMail) -> BackupReport | None:
    parsed = mail.field("ParsedResult")
    operation = mail.field("MainOperation")
    if parsed is None or operation is None or mail.field("BeginTime") is None:
        return None
    status = _RESULTS.get(parsed.lower())
    if status is None or operation.lower() != "backup":
        return None  # restore/test/compact runs are not backup results
    job = _SUBJECT_JOB.search(mail.subject)
    error = None
    if status == "failure":
        error = summary(_entries(mail.text, "Errors")) or f"ParsedResult: {parsed}"
    elif status == "warning":
        error = summary(_entries(mail.text, "Warnings")) or "ParsedResult: Warning"
    return BackupReport(
        product="duplicati",
        variant=None,
        status=status,  # type: ignore[arg-type]
        job=job.group(1) if job else None,
        host=None,
        start=_time(mail.field("BeginTime")),
        end=_time(mail.field("EndTime")),
        size=None,
        error=error,
        lang="en",
    )
