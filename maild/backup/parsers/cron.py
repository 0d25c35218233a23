"""borgmatic and rsnapshot output mailed by cron (FORMATS.md 3.13).

Envelope from the cron daemons: `From: Cron Daemon <root@host>` or `root (Cron Daemon)`,
`Subject: Cron <user@host> <command>` (one daemon appends ` (failed)`). job = the
command, host = the subject's host. Other commands are left to the generic rules.
"""

from __future__ import annotations

import re

from maild.backup.parsers.common import clip, parse_ymd, summary
from maild.backup.parsers.mail import ReportMail
from maild.backup.report import BackupReport

MARKERS = re.compile(r"^Cron <|Cron Daemon", re.I | re.M)
# lower-case substrings one of which every MARKERS match contains (a quick pre-test)
NEEDLES = ("cron <", "cron daemon")

_SUBJECT = re.compile(
    r"^Cron <(?P<user>[^@>\s]+)@(?P<host>[^>\s]+)>\s+(?P<command>.+?)(?P<failed>\s+\(failed\))?$"
)

# borgmatic
_BORG_FAILED = re.compile(
    r": An error occurred$|returned non-zero exit status|^Need some help\?", re.M
)
_BORG_OK = re.compile(r": Successfully ran configuration file$", re.M)
_BORG_WARNING = re.compile(
    r"^(?:Remote: )?(.+: (?:file changed while we backed it up|\[Errno \d+\].*)|[Ww]arning: .+)$",
    re.M,
)
_BORG_EXIT = re.compile(r"returned non-zero exit status (\d+)")

# rsnapshot
_RSNAPSHOT_FAILED = re.compile(r"rsnapshot encountered an error|^ERROR: ", re.M)
_RSNAPSHOT_ERROR = re.compile(r"^ERROR: .+$", re.M)
_RSYNC_WARNING = re.compile(
    r"^(rsync warning: .+?|WARNING: .+?|Some files and/or directories in .+ vanished .+?)"
    r"(?: at [\w.]+\(\d+\) \[\w+=[\d.]+\])?$",
    re.M,
)


def _borgmatic(text: str, failed_flag: bool) -> tuple[str, str | None] | None:
    if _BORG_FAILED.search(text) or failed_flag:
        remote = [
            line[len("Remote: ") :] for line in text.split("\n") if line.startswith("Remote: ")
        ]
        problems = remote or [
            line
            for line in text.split("\n")
            if re.search(r"error|failed|denied|refused", line, re.I)
        ]
        error = summary(problems) or "borgmatic failed"
        exit_code = _BORG_EXIT.search(text)
        if exit_code:
            error = f"{error} (borg exit status {exit_code.group(1)})"
        return "failure", error
    if not _BORG_OK.search(text):
        return None  # partial output: not a finished run
    warnings = _BORG_WARNING.findall(text)
    return ("warning", summary(warnings)) if warnings else ("success", None)


def _rsnapshot(text: str, failed_flag: bool) -> tuple[str, str | None] | None:
    if _RSNAPSHOT_FAILED.search(text) or failed_flag:
        errors = _RSNAPSHOT_ERROR.findall(text)
        return "failure", summary(errors) or clip(text.strip().split("\n")[-1])
    warnings = _RSYNC_WARNING.findall(text)
    if warnings:
        return "warning", summary(warnings)
    return "success", None


def parse(mail: ReportMail) -> BackupReport | None:
    subject = _SUBJECT.match(mail.subject)
    if subject is None or "cron" not in mail.sender.lower():
        return None
    command = subject.group("command")
    failed_flag = subject.group("failed") is not None
    text = mail.text
    if "borgmatic" in command or "summary:\n" in text and "borgmatic" in text:
        variant, outcome = "borgmatic", _borgmatic(text, failed_flag)
    elif "rsnapshot" in command:
        variant, outcome = "rsnapshot", _rsnapshot(text, failed_flag)
    else:
        return None
    if outcome is None:
        return None
    status, error = outcome
    start = end = None
    if variant == "borgmatic":
        start = parse_ymd(mail.field("Time (start)"))
        end = parse_ymd(mail.field("Time (end)"))
    return BackupReport(
        product="cron",
        variant=variant,
        status=status,  # type: ignore[arg-type]
        job=command,
        host=subject.group("host"),
        start=start,
        end=end,
        size=None,
        error=error,
        lang="en",
    )
