"""Uranium Backup (Italian vendor). Format INFERRED, no real capture yet (see FORMATS.md 3.5).

Text+HTML report `Uranium Backup - Report esecuzione backup` (EN `Backup execution
report`) with `Nome backup / Computer / Data/ora inizio / Data/ora fine / Dimensione /
Risultato / Errori / Avvisi` and a `Messaggi:` list; subject
`Uranium Backup: backup "<job>" <esito> [<COMPUTER>]`.
"""

from __future__ import annotations

import re

from maild.backup.parsers.common import first_match, parse_dmy, size_text, summary
from maild.backup.parsers.mail import ReportMail
from maild.backup.report import BackupReport

MARKERS = re.compile(r"\buranium\b", re.I)
# lower-case substrings one of which every MARKERS match contains (a quick pre-test)
NEEDLES = ("uranium",)

_REPORT_TITLE = re.compile(
    r"Uranium Backup\s*-\s*(Report esecuzione backup|Backup execution report)", re.I
)
_RESULTS = [
    (re.compile(r"fallit|non riuscit|failed|errori|errors|interrott|aborted", re.I), "failure"),
    (re.compile(r"avvisi|warnings?", re.I), "warning"),
    (re.compile(r"successo|successfully|completat|completed", re.I), "success"),
]
_SUBJECT = re.compile(
    r'Uranium Backup:\s*backup\s+"(?P<job>[^"]+)".*?(?:\[(?P<host>[^\]]+)\])?\s*$', re.I
)
_MESSAGES = re.compile(r"^\s*(Messaggi|Messages)\s*:\s*$", re.I | re.M)
_PREFIX = re.compile(r"^\s*-?\s*(?:(?:Errore|Error|Avviso|Warning)\s*:\s*)?")


def _messages(text: str) -> list[str]:
    m = _MESSAGES.search(text)
    if not m:
        return []
    found = []
    for line in text[m.end() :].split("\n"):
        if re.match(r"^\s*Uranium Backup\b", line):
            break
        line = _PREFIX.sub("", line).strip()
        if line:
            found.append(line)
    return found


def parse(mail: ReportMail) -> BackupReport | None:
    title = _REPORT_TITLE.search(mail.text) or _REPORT_TITLE.search(mail.html_text)
    if title is None:
        return None
    result = mail.field("Risultato", "Result")
    subject = _SUBJECT.search(mail.subject)
    job = mail.field("Nome backup", "Backup name") or (subject.group("job") if subject else None)
    if not result or not job:
        return None
    status = first_match(_RESULTS, result)
    if status is None:
        return None
    italian = title.group(1).lower().startswith("report")
    error = summary(_messages(mail.text)) if status != "success" else None
    host = mail.field("Computer") or (subject.group("host") if subject else None)
    return BackupReport(
        product="uranium",
        variant=None,
        status=status,  # type: ignore[arg-type]
        job=job,
        host=host,
        start=parse_dmy(mail.field("Data/ora inizio", "Start date/time")),
        end=parse_dmy(mail.field("Data/ora fine", "End date/time")),
        size=size_text(mail.field("Dimensione", "Size"), italian=italian),
        error=error or (result if status != "success" else None),
        lang="it" if italian else "en",
    )
