"""Acronis Cyber Protect Cloud alerts (vocabulary documented, layout INFERRED, FORMATS.md 3.7).

Sender `noreply-abc@cloud.acronis.com` by default, subject `<status phrase>: <DEVICE>`,
body headline = status phrase, then `Device / Protection plan / Started / Finished /
Backup size / Error|Warning` (Italian console: `Dispositivo / Piano di protezione /
Avviato / Completato / Dimensione backup / Errore|Avviso`). The daily recap digest is
not a run and is ignored.
"""

from __future__ import annotations

import re

from maild.backup.parsers.common import clip, first_match, parse_dmy, size_text
from maild.backup.parsers.mail import ReportMail
from maild.backup.report import BackupReport

MARKERS = re.compile(r"acronis|\bbackup (?:succeeded|failed|riuscito|non riuscito)\b", re.I)
# lower-case substrings one of which every MARKERS match contains (a quick pre-test)
NEEDLES = ("acronis", "backup succeeded", "backup failed", "backup riuscito", "backup non riuscito")

_HEADLINES = [  # "succeeded with warnings" before "succeeded"
    (
        re.compile(r"^\s*Backup (?:succeeded with warnings|riuscito con avvisi)\b", re.I | re.M),
        "warning",
    ),
    (re.compile(r"^\s*Backup (?:failed|non riuscito)\b", re.I | re.M), "failure"),
    (re.compile(r"^\s*Backup (?:succeeded|riuscito)\b", re.I | re.M), "success"),
]


def parse(mail: ReportMail) -> BackupReport | None:
    from_acronis = "acronis" in mail.sender.lower() or "acronis" in mail.text.lower()
    plan = mail.field("Protection plan", "Piano di protezione")
    if not from_acronis or plan is None:
        return None
    status = first_match(_HEADLINES, mail.text) or first_match(_HEADLINES, mail.subject)
    if status is None:
        return None
    italian = mail.field("Piano di protezione") is not None
    error = None
    if status != "success":
        error = mail.field("Error", "Errore", "Warning", "Avviso", "Avvertenza")
    return BackupReport(
        product="acronis",
        variant="cyber_protect_cloud",
        status=status,  # type: ignore[arg-type]
        job=plan,
        host=mail.field("Device", "Dispositivo", "Machine", "Macchina"),
        start=parse_dmy(mail.field("Started", "Avviato")),
        end=parse_dmy(mail.field("Finished", "Completato")),
        size=size_text(mail.field("Backup size", "Dimensione backup"), italian=italian),
        error=clip(error) if error else None,
        lang="it" if italian else "en",
    )
