"""Windows Server Backup: it sends no mail itself, admins' scripts do. Two layouts:

- `wbjobreport`: the widely copied WBJobReport.ps1 HTML (`Backup Result:`, `Start time last
  backup:`, `Error Message (if applicable):`), subject `Successful|Failed Backup on HOST`;
- `event`: a scheduled task mailing the Microsoft-Windows-Backup event (Get-WinEvent
  `Key : Value` list, or an Italian `Data evento / ID evento / Livello / Messaggio:` text).
  Event texts carry the start as a UTC timestamp; the event time is the end.
"""

from __future__ import annotations

import re
from datetime import datetime

from maild.backup.parsers.common import clip, parse_dmy, parse_ymd, utc_to_local
from maild.backup.parsers.mail import ReportMail
from maild.backup.report import BackupReport

MARKERS = re.compile(
    r"Microsoft-Windows-Backup|Windows Server Backup|wbadmin|Backup Result|Backup on \S+", re.I
)
# lower-case substrings one of which every MARKERS match contains (a quick pre-test)
NEEDLES = (
    "microsoft-windows-backup",
    "windows server backup",
    "wbadmin",
    "backup result",
    "backup on ",
)

# Microsoft-Windows-Backup event ids -> run result (14 "has completed" is neutral: not a run).
_EVENT_STATUS = {
    4: "success",
    7: "warning", 13: "warning",
    5: "failure", 8: "failure", 9: "failure", 17: "failure", 18: "failure", 19: "failure",
    20: "failure", 21: "failure", 22: "failure", 49: "failure", 50: "failure", 52: "failure",
    517: "failure", 521: "failure", 561: "failure",
}  # fmt: skip
_LEVEL_STATUS = {
    "error": "failure", "errore": "failure", "critical": "failure", "critico": "failure",
    "warning": "warning", "avviso": "warning", "avvertimento": "warning",
}  # fmt: skip
_UTC_STAMP = re.compile(r"'(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.\d+)?Z'")
_STARTED_AT = re.compile(r"\s+(?:that started at|avviata alle|iniziata alle)\s+'[^']*'", re.I)
_ADVICE = re.compile(
    r"^(Please review|Esaminare|Review the event|Rivedere|Make sure|Assicurarsi)", re.I
)
_SUBJECT_HOST = re.compile(r"(?:Backup on|Backup Report for)\s+([\w.-]+)", re.I)


def _short_host(name: str | None) -> str | None:
    if not name:
        return None
    return name.strip().split(".")[0].upper() or None


def _message_summary(message: str) -> str:
    message = _STARTED_AT.sub("", message)
    sentences = re.split(r"(?<=\.)\s+(?=[A-Z])", message)
    kept = [s for s in sentences if not _ADVICE.match(s)]
    return clip(" ".join(kept) or message)


def _wbjobreport(mail: ReportMail) -> BackupReport | None:
    result = mail.field("Backup Result")
    if result is None or mail.field("Start time last backup") is None:
        return None
    status = "success" if re.match(r"success", result, re.I) else "failure"
    heading = _SUBJECT_HOST.search(mail.subject) or _SUBJECT_HOST.search(mail.text)
    error = mail.field("Error Message (if applicable)") if status == "failure" else None
    return BackupReport(
        product="wsb",
        variant="wbjobreport",
        status=status,  # type: ignore[arg-type]
        job=None,
        host=_short_host(heading.group(1)) if heading else None,
        start=parse_dmy(mail.field("Start time last backup")),
        end=parse_dmy(mail.field("End time last backup")),
        size=None,
        error=(_message_summary(error) if error else result) if status == "failure" else None,
        lang="en",
    )


def _event_message(mail: ReportMail) -> str | None:
    value = mail.field("Message", "Messaggio")
    if value:
        return value
    m = re.search(
        r"^\s*(?:Message|Messaggio)\s*:\s*\n(.+?)(?:\n\s*\n|\n--|\Z)", mail.text, re.I | re.M | re.S
    )
    return re.sub(r"\s+", " ", m.group(1)).strip() if m else None


def _event(mail: ReportMail) -> BackupReport | None:
    source = mail.field("ProviderName", "Origine", "Source", "Provider")
    if not source or "backup" not in source.lower():
        return None
    event_id = mail.field("Id", "ID evento", "Event ID", "EventID")
    level = (mail.field("LevelDisplayName", "Livello", "Level") or "").lower()
    message = _event_message(mail) or ""
    status = _EVENT_STATUS.get(int(event_id)) if event_id and event_id.isdigit() else None
    if status is None and event_id not in ("14",):
        status = _LEVEL_STATUS.get(level)
        if status is None and re.search(
            r"finished successfully|completata correttamente", message, re.I
        ):
            status = "success"
    if status is None:
        return None
    italian = mail.field("Livello", "ID evento") is not None

    stamp = _UTC_STAMP.search(message)
    start = utc_to_local(datetime.fromisoformat(stamp.group(1))) if stamp else None
    when = mail.field("TimeCreated", "Data evento", "Date", "Data")
    end = parse_dmy(when) or parse_ymd(when)
    host = mail.field("MachineName", "Computer", "Nome computer")
    if host is None:
        m = re.search(r"\b(?:dal server|from server|on server)\s+([\w.-]+)", mail.text, re.I)
        m = (
            m
            or _SUBJECT_HOST.search(mail.subject)
            or re.match(r"^\[?\w*\]?\s*([\w.-]+) -", mail.subject)
        )
        host = m.group(1) if m else mail.sender_addr.split("@")[0] or None
    return BackupReport(
        product="wsb",
        variant="event",
        status=status,  # type: ignore[arg-type]
        job=None,
        host=_short_host(host),
        start=start,
        end=end,
        size=None,
        error=_message_summary(message) if status != "success" and message else None,
        lang="it" if italian else "en",
    )


def parse(mail: ReportMail) -> BackupReport | None:
    return _wbjobreport(mail) or _event(mail)
