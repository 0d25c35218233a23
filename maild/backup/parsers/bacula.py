"""Bacula and Bareos job reports (format from the sources, FORMATS.md 3.10).

Subject `Bacula: %t %e of %c %l` (`Bareos: ...`), body = the job's log lines then the
director's summary block (`JobId:`, `Job: <name>.<yyyy-mm-dd_HH.MM.SS_NN>`, `Client:`,
`Start time:`, `End time:`, `FD Bytes Written:`, `Non-fatal FD errors:`, `Termination:`).
Only Backup jobs are reports; `Intervention needed` mails and restores are not.
"""

from __future__ import annotations

import re

from maild.backup.parsers.common import parse_d_mon_y, summary
from maild.backup.parsers.mail import ReportMail
from maild.backup.report import BackupReport

MARKERS = re.compile(r"\b(?:bacula|bareos)\b", re.I)
# lower-case substrings one of which every MARKERS match contains (a quick pre-test)
NEEDLES = ("bacula", "bareos")

_TERMINATION = re.compile(r"^\s*Termination:\s*\**\s*(.+?)\s*\**\s*$", re.M)
_JOB_SUFFIX = re.compile(r"\.\d{4}-\d{2}-\d{2}_\d{2}\.\d{2}\.\d{2}_\d+$")
_LOG_LINE = re.compile(r"^\d{1,2}-\w{3}(?:-\d{4})? \d{1,2}:\d{2} (\S+) JobId \d+:\s?(.*)$")
_SOURCE_REF = re.compile(r"^[\w/.-]+\.(?:c|cc|cpp|h):\d+\s+")


def _status(termination: str) -> str | None:
    text = termination.lower()
    if "backup" not in text:
        return None  # restore, verify, admin, copy/migrate job
    if "with warnings" in text:
        return "warning"
    if re.fullmatch(r"backup ok", text.strip()):
        return "success"
    return "failure"  # "Backup Error", "Backup failed -- incomplete", "Backup Canceled"


def _log(text: str) -> list[tuple[str, str]]:
    """(daemon, message) of the job log lines before the summary block."""
    return [(m.group(1), m.group(2)) for m in map(_LOG_LINE.match, text.split("\n")) if m]


def _error(status: str, text: str, termination: str, fd_errors: str | None) -> str | None:
    entries = _log(text)
    if status == "failure":
        fatal = []
        for _daemon, message in entries:
            m = re.match(r"(?:Fatal error|Error):\s*(.*)$", message)
            if m and not m.group(1).startswith("Elapsed time="):
                fatal.append(_SOURCE_REF.sub("", m.group(1)))
        return summary(fatal) or termination
    # warnings: the client's (-fd) indented per-file messages, and explicit Warning: lines
    files = [msg.strip() for daemon, msg in entries if msg.startswith(" ") or msg.startswith("\t")]
    warnings = [_SOURCE_REF.sub("", m[9:].strip()) for _d, m in entries if m.startswith("Warning:")]
    listed = summary(files or warnings)
    count = int(fd_errors) if fd_errors and fd_errors.isdigit() else 0
    if count:
        noun = "error" if count == 1 else "errors"
        return (
            f"{count} non-fatal FD {noun}: {listed}" if listed else f"{count} non-fatal FD {noun}"
        )
    return listed or termination


def parse(mail: ReportMail) -> BackupReport | None:
    text = mail.text
    termination = _TERMINATION.search(text)
    job_field = mail.field("Job")
    if termination is None or job_field is None or mail.field("JobId") is None:
        return None
    status = _status(termination.group(1))
    if status is None:
        return None
    bareos = bool(re.search(r"\bbareos\b", mail.subject + "\n" + text, re.I))
    client = mail.field("Client") or ""
    client_name = re.match(r'"?([^"\s]+)"?', client)
    written = mail.field("FD Bytes Written") or ""
    size = re.search(r"\(([^)]+)\)", written)
    return BackupReport(
        product="bacula",
        variant="bareos" if bareos else "bacula",
        status=status,  # type: ignore[arg-type]
        job=_JOB_SUFFIX.sub("", job_field.strip()),
        host=client_name.group(1) if client_name else None,
        start=parse_d_mon_y(mail.field("Start time")),
        end=parse_d_mon_y(mail.field("End time")),
        size=size.group(1) if size else (written or None),
        error=None
        if status == "success"
        else _error(status, text, termination.group(1), mail.field("Non-fatal FD errors")),
        lang="en",
    )
