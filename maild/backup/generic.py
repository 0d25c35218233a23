"""Configured rules for backup tools without a dedicated parser.

A rule is built from configuration, e.g.

    [[backup_generic_rule]]
    name = "pg-dump-script"
    product = "script"
    sender = 'backup@srv-db\\.'
    subject = 'Backup database (?P<job>\\S+)'
    success = '^RESULT: OK$'
    failure = '^RESULT: (FAILED|ERROR)'
    error = '^ERROR: (?P<error>.+)$'

Regexes are searched case-insensitively and in multi-line mode (`^`/`$` match at line
breaks). `sender` is matched against `Name <address>`, `subject` against the decoded
subject without forward prefixes, the status regexes against subject + newline + body.
Statuses are tried failure, then warning, then success, so "OK -- with warnings" can be
caught by a warning regex although a success regex matches too. `job`/`host`/`error`
regexes are searched in subject + body and must have a group of that name; a `job`
group in the subject regex is used when there is no `job` regex.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from maild.backup.report import BackupReport, Status

if TYPE_CHECKING:
    from maild.backup.parsers.mail import ReportMail

_FLAGS = re.IGNORECASE | re.MULTILINE


def _compile(
    rule: str, name: str, pattern: str | None, group: str | None = None
) -> re.Pattern[str] | None:
    if pattern is None or pattern == "":
        return None
    try:
        compiled = re.compile(pattern, _FLAGS)
    except re.error as exc:
        raise ValueError(f"backup rule {rule!r}: invalid {name} regex: {exc}") from exc
    if group and group not in compiled.groupindex:
        raise ValueError(f"backup rule {rule!r}: {name} regex needs a (?P<{group}>...) group")
    return compiled


@dataclass
class GenericRule:
    name: str
    product: str
    subject: str
    success: str | None = None
    warning: str | None = None
    failure: str | None = None
    sender: str | None = None
    job: str | None = None
    host: str | None = None
    error: str | None = None
    _compiled: dict[str, re.Pattern[str] | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self.subject:
            raise ValueError(f"backup rule {self.name!r}: needs a subject regex")
        if not (self.success or self.warning or self.failure):
            raise ValueError(
                f"backup rule {self.name!r}: needs a success, warning or failure regex"
            )
        groups = {"job": "job", "host": "host", "error": "error"}
        for attr in ("sender", "subject", "success", "warning", "failure", "job", "host", "error"):
            self._compiled[attr] = _compile(self.name, attr, getattr(self, attr), groups.get(attr))

    def match(self, mail: ReportMail) -> BackupReport | None:
        """The report this rule reads from `mail`, or None when the rule does not apply."""
        c = self._compiled
        if c["sender"] is not None and not c["sender"].search(mail.sender):
            return None
        subject_match = c["subject"].search(mail.subject) if c["subject"] else None
        if c["subject"] is not None and subject_match is None:
            return None
        haystack = f"{mail.subject}\n{mail.text}"
        status: Status | None = None
        for candidate in ("failure", "warning", "success"):
            pattern = c[candidate]
            if pattern is not None and pattern.search(haystack):
                status = candidate  # type: ignore[assignment]
                break
        if status is None:
            return None

        def grab(attr: str) -> str | None:
            pattern = c[attr]
            m = pattern.search(haystack) if pattern else None
            value = m.group(attr) if m else None
            return value.strip() if value else None

        job = grab("job")
        if job is None and subject_match is not None and "job" in subject_match.re.groupindex:
            job = (subject_match.group("job") or "").strip() or None
        return BackupReport(
            product=self.product,
            variant=self.name,
            status=status,
            job=job,
            host=grab("host"),
            start=None,
            end=None,
            size=None,
            error=grab("error") if status != "success" else None,
            lang=None,
        )
