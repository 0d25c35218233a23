"""Cobian Backup 11 (Gravity) and Cobian Reflector mailed logs (FORMATS.md 3.11).

Log lines `yyyy-mm-dd HH:MM ** Backing up the task "X" **` ... `** Backup done for the task
"X". Errors: N. ... Total size: S **`; error lines start with `ERR`, warning lines with
`WAR`. CB11's default subject is `Cobian Backup 11 [HOST] (yyyy-mm-dd)`. Cobian has no
warning level: `Errors: 0` with `WAR` lines is read as a warning (INFERRED). A log with
several tasks is reported as its first task. Only the English log language is known
(the Spanish/Italian log strings were not seen in a real mail).
"""

from __future__ import annotations

import re

from maild.backup.parsers.common import parse_ymd, summary
from maild.backup.parsers.mail import ReportMail
from maild.backup.report import BackupReport

MARKERS = re.compile(r"\bcobian\b|\*\* Backing up the task|\*\* Backup done for the task", re.I)
# lower-case substrings one of which every MARKERS match contains (a quick pre-test)
NEEDLES = ("cobian", "** backing up the task", "** backup done for the task")

_BEGIN = re.compile(
    r'^(?:\w{3} )?(\d{4}-\d{2}-\d{2} \d{1,2}:\d{2}) \*\* Backing up the task "([^"]+)"', re.M
)
_DONE = re.compile(
    r'^(?:\w{3} )?(\d{4}-\d{2}-\d{2} \d{1,2}:\d{2}) \*\* Backup done for the task "([^"]+)"\. '
    r"Errors?: (\d+)\..*?Total size: ([^*]+?)\s*\*\*",
    re.M,
)
_LOG = re.compile(r"^(ERR|WAR) \d{4}-\d{2}-\d{2} \d{1,2}:\d{2} (.+)$", re.M)
_SUBJECT_HOST = re.compile(r"Cobian (?:Backup \d+|Reflector)\s*\[([^\]]+)\]", re.I)


def parse(mail: ReportMail) -> BackupReport | None:
    text = mail.text
    begin = _BEGIN.search(text)
    if begin is None:
        return None
    job = begin.group(2)
    done = next((m for m in _DONE.finditer(text, begin.end()) if m.group(2) == job), None)
    if done is None:
        return None  # log cut short: the task's outcome is unknown
    section = text[begin.start() : done.end()]
    errors = int(done.group(3))
    logged = _LOG.findall(section)
    warnings = [msg for kind, msg in logged if kind == "WAR"]
    if errors:
        status = "failure"
        listed = summary(msg for kind, msg in logged if kind == "ERR")
        error = f"Errors: {errors} - {listed}" if listed else f"Errors: {errors}"
    elif warnings:
        status, error = "warning", summary(warnings)
    else:
        status, error = "success", None
    host = _SUBJECT_HOST.search(mail.subject)
    return BackupReport(
        product="cobian",
        variant="reflector"
        if re.search(r"Cobian Reflector", mail.subject + text, re.I)
        else "cb11",
        status=status,  # type: ignore[arg-type]
        job=job,
        host=host.group(1).strip() if host else None,
        start=parse_ymd(begin.group(1)),
        end=parse_ymd(done.group(1)),
        size=done.group(4).strip(),
        error=error,
        lang="en",
    )
