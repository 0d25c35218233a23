"""The outcome of one backup run, as read from a backup product's notification mail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Status = Literal["success", "warning", "failure"]


@dataclass(slots=True)
class BackupReport:
    product: str  # parser id, e.g. "veeam", "bacula", or a generic rule's product label
    variant: str | None  # sub-format, e.g. "vbr", "agent_windows", "bareos"
    status: Status
    job: str | None  # job name verbatim as the product prints it
    host: str | None  # the single protected machine, None when the job protects several
    # naive local wall-clock times (Europe/Rome) as the report shows them;
    # None when the report does not say (the caller then uses the mail Date)
    start: datetime | None
    end: datetime | None
    size: str | None  # size text, e.g. "Transferred 6.1 GB", "18.4 GB"
    error: str | None  # short summary of what went wrong (warning/failure), else None
    lang: str | None  # language (or locale) of the report, e.g. "it", "en", "en-GB"
