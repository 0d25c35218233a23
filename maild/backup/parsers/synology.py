"""Synology DSM notifications: Hyper Backup and Active Backup for Business.

Wording INFERRED (FORMATS.md 3.8). The NAS sends every kind of notification from one
sender (disk warnings, DSM updates...), so the event sentence decides, not the sender:
Hyper Backup `Backup task <task> on <NAS> has failed / has been partially completed /
has been completed`, ABB `The backup task <task> of device <dev> on <NAS> ...`, Italian
`L'attività di backup <task> [del dispositivo <dev>] su <NAS> non è riuscita / è stata
completata [parzialmente]`.
"""

from __future__ import annotations

import re

from maild.backup.parsers.common import clip, first_match, parse_ymd, size_text
from maild.backup.parsers.mail import ReportMail
from maild.backup.report import BackupReport

MARKERS = re.compile(r"Hyper Backup|Active Backup|backup task|attività di backup", re.I)
# lower-case substrings one of which every MARKERS match contains (a quick pre-test)
NEEDLES = ("hyper backup", "active backup", "backup task", "attività di backup")

_EVENT = re.compile(
    r"(?:The )?backup task (?P<task>\S+)(?: of device (?P<device>\S+))? on (?P<nas>\S+?) "
    r"(?P<outcome>has been partially completed|was partially completed|has failed|failed|"
    r"has been (?:successfully )?completed(?: successfully)?|was (?:successfully )?completed)"
    r"|L['’]attività di backup (?P<task_it>\S+)(?: del dispositivo (?P<device_it>\S+))? "
    r"su (?P<nas_it>\S+?) (?P<outcome_it>non è riuscita|è stata completata parzialmente|"
    r"è stata completata(?: correttamente| con successo)?)",
    re.I,
)
_OUTCOMES = [
    (re.compile(r"partially|parzialmente", re.I), "warning"),
    (re.compile(r"failed|non è riuscita", re.I), "failure"),
    (re.compile(r"completed|completata", re.I), "success"),
]


def parse(mail: ReportMail) -> BackupReport | None:
    m = _EVENT.search(mail.text)
    if m is None:
        return None
    italian = m.group("task_it") is not None
    status = first_match(_OUTCOMES, m.group("outcome_it") if italian else m.group("outcome"))
    start = parse_ymd(mail.field("Start time", "Ora di inizio"))
    if status is None or start is None:
        return None
    task = m.group("task_it") if italian else m.group("task")
    device = m.group("device_it") if italian else m.group("device")
    nas = (m.group("nas_it") if italian else m.group("nas")).rstrip(".")
    active_backup = device is not None or "active backup" in mail.subject.lower()
    size = mail.field(
        "Transferred data", "Dati trasferiti", "Backed up data", "Dati sottoposti a backup"
    )
    error = None
    if status != "success":
        error = mail.field("Error", "Errore", "Cause", "Causa")
    return BackupReport(
        product="synology",
        variant="active_backup" if active_backup else "hyper_backup",
        status=status,  # type: ignore[arg-type]
        job=mail.field("Task", "Attività") or task,
        host=(mail.field("Device", "Dispositivo") or device) if active_backup else nas,
        start=start,
        end=parse_ymd(mail.field("End time", "Ora di fine")),
        size=size_text(size, italian=italian),
        error=clip(error) if error else None,
        lang="it" if italian else "en",
    )
