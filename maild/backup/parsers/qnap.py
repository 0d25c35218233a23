"""QNAP Hybrid Backup Sync 3 via the QTS notification centre (layout INFERRED, FORMATS.md 3.9).

Subject `[Info|Warning|Error][<NAS>] Hybrid Backup Sync` (Italian levels `Informazioni /
Avviso / Errore`), body `Server Name / IP Address / Date/Time / Level / Application /
Category / Message` (Italian `Nome server / Indirizzo IP / Data/Ora / Livello /
Applicazione / Categoria / Messaggio`). The message names the job in quotes. Only the end
time is given.
"""

from __future__ import annotations

import re

from maild.backup.parsers.common import clip, first_match, parse_ymd
from maild.backup.parsers.mail import ReportMail
from maild.backup.report import BackupReport

MARKERS = re.compile(r"Hybrid Backup Sync|\bHBS\b", re.I)
# lower-case substrings one of which every MARKERS match contains (a quick pre-test)
NEEDLES = ("hybrid backup sync", "hbs")

_OUTCOMES = [
    (
        re.compile(
            r"failed to complete|impossibile completare|non (?:è stato )?completat|non riuscit|"
            r"\bfailed\b|\berror(?:e)? (?:while|durante)",
            re.I,
        ),
        "failure",
    ),  # fmt: skip
    (
        re.compile(r"with errors|with warnings|con errori|con avvisi|parzialmente|partially", re.I),
        "warning",
    ),
    (re.compile(r"\bfinished\b|\bcompleted\b|completat[oa]|terminat[oa]", re.I), "success"),
]
_JOB = re.compile(r'(?:job|processo(?: di \w+)?|attività(?: di \w+)?)\s+"([^"]+)"', re.I)
_APP_TAG = re.compile(r"^\s*\[Hybrid Backup Sync\]\s*", re.I)


def parse(mail: ReportMail) -> BackupReport | None:
    app = mail.field("Application", "Applicazione")
    message = mail.field("Message", "Messaggio")
    if not app or "hybrid backup sync" not in app.lower() or not message:
        return None
    message = _APP_TAG.sub("", message)
    job = _JOB.search(message)
    status = first_match(_OUTCOMES, message)
    if job is None or status is None:
        return None  # not a job result ("Started Backup job", settings changed, ...)
    italian = mail.field("Livello", "Nome server") is not None
    error = None
    if status != "success":
        # the first sentence repeats the job name; the cause follows it
        sentences = re.split(r"(?<=\.)\s+", message, maxsplit=1)
        error = clip(sentences[1] if len(sentences) > 1 and sentences[1] else message)
    return BackupReport(
        product="qnap",
        variant="hbs3",
        status=status,  # type: ignore[arg-type]
        job=job.group(1),
        host=mail.field("Server Name", "Nome server") or mail.sender_name or None,
        start=None,
        end=parse_ymd(mail.field("Date/Time", "Data/Ora")),
        size=None,
        error=error,
        lang="it" if italian else "en",
    )
