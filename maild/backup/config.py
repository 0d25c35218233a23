"""Configuration of backup control: expected jobs, generic report rules, morning summary.

    [[backup_job]]
    ente = "Comune di Vaiano Cremasco"
    name = "Backup Gestionale Halley"   # the job name as the product reports it
    product = "veeam"
    sender = "backup@comune.vaiano-cremasco.cr.it"   # optional
    host = "SRV-COMUNE01"               # optional; needed for products without job names (wsb)
    schedule = "daily"                  # daily | weekdays | a cron expression
    expected_by = "07:30"               # local time the report must have arrived by

    [[backup_rule]]                     # a product without a parser (see maild.backup.generic)
    name = "pg-dump-script"
    product = "script"
    subject = 'Backup database (?P<job>\\S+)'
    success = '^RESULT: OK$'
    failure = '^RESULT: (FAILED|ERROR)'

    [backup]
    summary_at = "08:00"                # optional morning summary to the operators
    resolve_on_success = true

Schedules name the days a report is due: a report is expected by `expected_by` on each
scheduled day. `daily` is every day, `weekdays` Monday to Friday except the ente's
holidays and closed days. A cron expression gives the moments the backup *runs*: each run's
report is due at the first `expected_by` at or after it ("0 22 * * 1-5" with "07:30" means
reports due Tuesday to Saturday at 07:30). `skip_holidays` overrides whether holidays of
the ente's calendar are skipped (default: only for `weekdays`).
"""

from __future__ import annotations

import re
from datetime import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from maild.backup.generic import GenericRule
from maild.backup.parsers import PARSERS

PriorityName = Literal["ALTA", "MEDIA", "BASSA"]
# every product a parser recognises, by the id its reports carry
PRODUCTS = frozenset(p.__name__.rsplit(".", 1)[1] for p in PARSERS) | {"generic"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _hhmm(value: str) -> str:
    if not re.fullmatch(r"\d{1,2}:\d{2}", value.strip()):
        raise ValueError(f"{value!r} is not a time like 07:30")
    hours, minutes = map(int, value.strip().split(":"))
    time(hours, minutes)  # raises on 25:00
    return f"{hours:02d}:{minutes:02d}"


def _as_time(value: str) -> time:
    hours, minutes = map(int, value.split(":"))
    return time(hours, minutes)


def norm(name: str | None) -> str:
    """Job names and hosts compare case-insensitively, whitespace collapsed."""
    return " ".join((name or "").split()).casefold()


class BackupJobConfig(_Model):
    ente: str
    name: str = Field(min_length=1)
    product: str
    sender: str | None = None
    host: str | None = None
    schedule: str = "daily"
    expected_by: str = "07:30"
    skip_holidays: bool | None = None
    priority_failure: PriorityName | None = None  # default: [backup] priority_failure
    priority_warning: PriorityName | None = None

    _chk_time = field_validator("expected_by")(lambda v: _hhmm(v))

    @field_validator("product")
    @classmethod
    def _product(cls, v: str) -> str:
        return v.strip().lower()

    @field_validator("sender")
    @classmethod
    def _sender(cls, v: str | None) -> str | None:
        return v.strip().lower() if v else None

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        v = " ".join(v.split())
        if v.lower() in ("daily", "weekdays"):
            return v.lower()
        from croniter import croniter

        if not croniter.is_valid(v):
            raise ValueError(f"{v!r} is neither daily, weekdays nor a cron expression")
        return v

    @model_validator(mode="after")
    def _wsb(self) -> BackupJobConfig:
        if self.product == "wsb" and not self.host:
            raise ValueError("Windows Server Backup reports carry no job name: give `host`")
        return self

    @property
    def key(self) -> str:
        """Stable identity of the job in the database (history survives reordering)."""
        return "|".join((norm(self.ente), self.product, norm(self.name), norm(self.host)))

    @property
    def expected_time(self) -> time:
        return _as_time(self.expected_by)

    @property
    def skips_holidays(self) -> bool:
        return self.skip_holidays if self.skip_holidays is not None else self.schedule == "weekdays"


class BackupRuleConfig(_Model):
    """A generic report rule: regular expressions for a product without a parser."""

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

    @model_validator(mode="after")
    def _compiles(self) -> BackupRuleConfig:
        self.rule()  # raises ValueError naming the regex at fault
        return self

    def rule(self) -> GenericRule:
        return GenericRule(**self.model_dump())


class BackupSettings(_Model):
    priority_failure: PriorityName = "ALTA"
    priority_warning: PriorityName = "MEDIA"
    resolve_on_success: bool = True  # a success after failures resolves the incident
    summary_at: str | None = None  # "08:00": morning summary to the operators; None: off
    summary_to: str | None = None  # default: the operators' address
    # after a start, wait this long before judging reports missing: the inbox is read first
    startup_grace_seconds: float = Field(120, ge=0)
    # deadlines further back than this are not judged (after a long outage)
    lookback_days: int = Field(7, ge=1, le=60)

    @field_validator("summary_to")
    @classmethod
    def _summary_to(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip().lower()
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", v):
            raise ValueError(f"{v!r} is not an e-mail address")
        return v

    @field_validator("summary_at")
    @classmethod
    def _summary_at(cls, v: str | None) -> str | None:
        return None if v in (None, "") else _hhmm(v)

    @property
    def summary_time(self) -> time | None:
        return _as_time(self.summary_at) if self.summary_at else None


def check_backup_config(cfg) -> None:
    """Cross-checks needing the whole configuration (raises ValueError)."""
    products = PRODUCTS | {r.product.strip().lower() for r in cfg.backup_rule}
    keys: set[str] = set()
    for i, job in enumerate(cfg.backup_job):
        where = f"backup_job[{i}] ({job.name!r})"
        if cfg.ente_by_name(job.ente) is None:
            raise ValueError(f"{where}: ente {job.ente!r} is not a configured [[ente]]")
        if job.product not in products:
            known = ", ".join(sorted(products))
            raise ValueError(f"{where}: unknown product {job.product!r} (known: {known})")
        if job.key in keys:
            raise ValueError(f"{where}: the same job is configured twice")
        keys.add(job.key)
    names = [r.name for r in cfg.backup_rule]
    if len(names) != len(set(names)):
        raise ValueError("two [[backup_rule]] entries share a name")


_RULES: dict[int, tuple[object, list[GenericRule]]] = {}


def generic_rules(cfg) -> list[GenericRule]:
    """The compiled generic rules of a loaded configuration (built once per Config)."""
    hit = _RULES.get(id(cfg))
    if hit is None or hit[0] is not cfg:
        hit = _RULES[id(cfg)] = (cfg, [r.rule() for r in cfg.backup_rule])
    return hit[1]
