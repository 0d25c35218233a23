"""Veeam Backup & Replication, Veeam Agent for Windows, Veeam Backup for Microsoft 365.

One HTML family: a header row `<Job type> job: <name>` + coloured status cell, the session
date row (in the server's Windows locale), a Success/Warning/Error summary grid with
Start time / End time / Transferred, and a per-object Details table whose last cell
holds the error. The subject (`[Failed] Job (2 VMs) 1 failed`, agent:
`[Failed] COMPUTER - Job - date`) is only a hint: admins rewrite it.
"""

from __future__ import annotations

import re
from datetime import date

from maild.backup.parsers.common import (
    MONTHS,
    on_day,
    parse_clock,
    size_text,
    summary,
)
from maild.backup.parsers.mail import ReportMail
from maild.backup.report import BackupReport, Status

MARKERS = re.compile(r"\bveeam\b", re.I)
# lower-case substrings one of which every MARKERS match contains (a quick pre-test)
NEEDLES = ("veeam",)

_STATUS: dict[str, Status] = {
    "success": "success",
    "warning": "warning",
    "failed": "failure",
    "error": "failure",
}
_JOB_HEADER = re.compile(r"^((?:[A-Za-z0-9 ]{0,30} )?job):\s*(.+)$", re.I)
_FOOTER = re.compile(
    r"Veeam (Backup & Replication|Agent for Microsoft Windows|Agent for Linux|"
    r"Backup for Microsoft 365|Backup for Microsoft Office 365)",
    re.I,
)
_SUBJECT = re.compile(r"\[(Success|Warning|Failed)\]\s*(.+)$", re.I)

# Session date line in the three locales seen: en-GB, en-US, it-IT.
_EN_GB = re.compile(r"^[A-Za-z]+, (\d{1,2}) ([A-Za-z]+) (\d{4})\b")
_EN_US = re.compile(r"^[A-Za-z]+, ([A-Za-z]+) (\d{1,2}), (\d{4})\b")
_IT_IT = re.compile(r"^(?:lunedì|martedì|mercoledì|giovedì|venerdì|sabato|domenica),? "
                    r"(\d{1,2}) ([a-z]+) (\d{4})\b", re.I)  # fmt: skip


def _session_date(rows: list[list[str]]) -> tuple[date | None, str | None]:
    for row in rows:
        if len(row) != 1:
            continue
        cell = row[0]
        for pattern, lang, order in ((_EN_GB, "en-GB", "dmy"), (_EN_US, "en-US", "mdy"),
                                     (_IT_IT, "it-IT", "dmy")):  # fmt: skip
            m = pattern.match(cell)
            if not m:
                continue
            if order == "dmy":
                day, month, year = m.groups()
            else:
                month, day, year = m.groups()
            number = MONTHS.get(month.lower())
            if number:
                try:
                    return date(int(year), number, int(day)), lang
                except ValueError:
                    return None, lang
    return None, None


def _grid(rows: list[list[str]]) -> dict[str, str]:
    """The summary grid: label cells followed by their value cell."""
    grid: dict[str, str] = {}
    for row in rows:
        if len(row) < 4 or row[0] not in ("Success", "Warning", "Error"):
            continue
        for label, value in zip(row[0::2], row[1::2], strict=False):
            grid.setdefault(label.rstrip(":").strip().lower(), value)
    return grid


def _details(rows: list[list[str]]) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, object rows, session messages) of the per-object Details table."""
    for i, row in enumerate(rows):
        if len(row) >= 3 and row[0] == "Name" and row[1] == "Status":
            header = row
            objects, messages = [], []
            for other in rows[i + 1 :]:
                if len(other) == len(header):
                    objects.append(other)
                elif len(other) == 1 and not _FOOTER.search(other[0]):
                    messages.append(other[0])
            return header, objects, messages
    return [], [], []


def parse(mail: ReportMail) -> BackupReport | None:
    rows = mail.rows
    head = next((r for r in rows if len(r) == 2 and _JOB_HEADER.match(r[0].split("\n")[0])), None)
    if head is None or not _FOOTER.search(mail.html_text or mail.text):
        return None
    status_word = head[1].strip().lower()
    status = _STATUS.get(status_word)
    subject = _SUBJECT.search(mail.subject)
    if status is None and subject:
        status = _STATUS.get(subject.group(1).lower())
    if status is None:
        return None  # e.g. a job still running, or a digest

    title, *description = head[0].split("\n")
    job_type, job = _JOB_HEADER.match(title).groups()  # type: ignore[union-attr]
    footer = _FOOTER.search(mail.html_text or mail.text)
    product_line = footer.group(1).lower() if footer else ""
    if job_type.lower().startswith("agent") or product_line.startswith("agent"):
        variant = "agent_windows" if "linux" not in product_line else "agent_linux"
    elif "microsoft" in product_line or any(d.startswith("Organization:") for d in description):
        variant = "m365"
    else:
        variant = "vbr"

    day, lang = _session_date(rows)
    grid = _grid(rows)
    start, end = (None, None)
    if day is not None:
        start, end = on_day(
            day, parse_clock(grid.get("start time")), parse_clock(grid.get("end time"))
        )

    header, objects, messages = _details(rows)
    host = None
    if variant.startswith("agent"):
        host = objects[0][0] if len(objects) == 1 else None
        if host is None and subject:
            host = subject.group(2).split(" - ")[0].strip() or None

    error = None
    if status != "success":
        detail_col = header.index("Details") if "Details" in header else len(header) - 1
        problems = []
        for obj in objects:
            if obj[1].lower() in ("warning", "failed", "error") and obj[detail_col]:
                text = re.sub(r"^(Error|Warning):\s*", "", obj[detail_col])
                problems.append(text if host else f"{obj[0]}: {text}")
        if not problems:
            problems = [re.sub(r"^(Error|Warning):\s*", "", m) for m in messages]
        error = summary(problems) or f"{job.strip()}: {head[1] or status}"

    transferred = grid.get("transferred")
    return BackupReport(
        product="veeam",
        variant=variant,
        status=status,
        job=job.strip(),
        host=host,
        start=start,
        end=end,
        size=f"Transferred {size_text(transferred, italian=True)}" if transferred else None,
        error=error,
        lang=lang,
    )
