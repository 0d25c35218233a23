"""Iperius Backup (Italian vendor). Format INFERRED, no real capture yet (see FORMATS.md 3.4).

HTML report: a `Computer / Operazione di backup / Esito / Inizio / Fine / ... / Errori /
Avvisi` table (English: `Backup job / Result / Start / End / ... / Errors / Warnings`),
then `[hh:mm:ss] Errore: ...` log lines, footer `... generato automaticamente da Iperius
Backup`. The subject is configurable, so the result is read from the body.
"""

from __future__ import annotations

import re

from maild.backup.parsers.common import first_match, parse_dmy, size_text, summary
from maild.backup.parsers.mail import ReportMail
from maild.backup.report import BackupReport

MARKERS = re.compile(r"\biperius\b", re.I)
# lower-case substrings one of which every MARKERS match contains (a quick pre-test)
NEEDLES = ("iperius",)

_RESULTS = [  # warnings before successes: "completato con avvisi" also says "completato"
    (
        re.compile(r"con errori|with errors|non riuscit|fallit|failed|interrott|aborted", re.I),
        "failure",
    ),
    (re.compile(r"con avvisi|with warnings", re.I), "warning"),
    (re.compile(r"con successo|successfully|completato|completed", re.I), "success"),
]
_LOG_LINE = re.compile(
    r"^\s*(?:\[[\d:]+\]\s*)?(Errore|Error|Avviso|Warning|Attenzione)\s*:\s*(.+)$", re.I
)


def parse(mail: ReportMail) -> BackupReport | None:
    text = mail.text
    if not re.search(r"\bIperius Backup\b", text) and "iperius" not in mail.sender.lower():
        return None
    result = mail.field("Esito", "Risultato", "Result")
    job = mail.field("Operazione di backup", "Nome backup", "Backup job", "Job")
    if not result or not job:
        return None
    status = first_match(_RESULTS, result)
    if status is None:
        errors = mail.field("Errori", "Errors") or "0"
        warnings = mail.field("Avvisi", "Warnings") or "0"
        status = "failure" if errors != "0" else "warning" if warnings != "0" else "success"
    italian = mail.field("Esito") is not None

    error = None
    if status != "success":
        wanted = ("errore", "error") if status == "failure" else ("avviso", "warning", "attenzione")
        lines = [m for m in map(_LOG_LINE.match, text.split("\n")) if m]
        error = summary(m.group(2) for m in lines if m.group(1).lower() in wanted) or summary(
            m.group(2) for m in lines
        )
        if error is None:
            error = result

    return BackupReport(
        product="iperius",
        variant=None,
        status=status,  # type: ignore[arg-type]
        job=job,
        host=mail.field("Computer", "Nome computer"),
        start=parse_dmy(mail.field("Inizio", "Start")),
        end=parse_dmy(mail.field("Fine", "End")),
        size=size_text(mail.field("Dimensione totale", "Total size"), italian=italian),
        error=error,
        lang="it" if italian else "en",
    )
