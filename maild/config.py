"""Configuration: one TOML file, validated at start.

Errors name the file, the key and what is wrong (`ConfigError`), so an admin can fix them
without reading code. Secrets are read from `password_file` (or systemd's
`$CREDENTIALS_DIRECTORY`) and kept out of `repr`, hence out of logs.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import date, time
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from maild.backup.config import (
    BackupJobConfig,
    BackupRuleConfig,
    BackupSettings,
    check_backup_config,
)

Profile = Literal["MINIMAL", "BASIC", "PRO", "ENTERPRISE"]
PriorityName = Literal["ALTA", "MEDIA", "BASSA"]
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ConfigError(Exception):
    """A configuration problem, worded for the admin."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _email(value: str) -> str:
    value = value.strip().lower()
    if not EMAIL_RE.match(value):
        raise ValueError(f"{value!r} is not an e-mail address")
    return value


Email = Annotated[str, Field(min_length=3)]


class ServiceConfig(_Model):
    name: str = "Supporto"
    address: Email
    operators_address: Email
    timezone: str = "Europe/Rome"
    state_dir: Path = Path("/var/lib/maild")
    language: Literal["it", "en"] = "it"
    # how ticket numbers are shown; fields: year, seq
    number_format: str = "{year}-{seq:06d}"
    tag_word: str = "Ticket"
    # other addresses that are ours (aliases, comment address): never acknowledged
    aliases: list[Email] = []
    comment_address: Email | None = None
    unknown_senders: Literal["accept", "reject"] = "accept"
    max_message_bytes: int = Field(25 * 1024 * 1024, gt=0)
    ack_rate_limit: int = Field(10, ge=0)  # acknowledgements per sender per hour
    templates_dir: Path | None = None
    default_priority: PriorityName = "MEDIA"
    # authserv-id of the consortium MTA's Authentication-Results (RFC 8601); None: any
    trusted_authserv_id: str | None = None
    # the parse stage and the outbox sender in processes of their own, so that a backlog
    # keeps every core busy (maild.parse_process, maild.sender_process)
    parse_process: bool = True
    sender_process: bool = True

    _chk_addr = field_validator("address", "operators_address", "comment_address")(
        lambda v: None if v is None else _email(v)
    )
    _chk_aliases = field_validator("aliases")(lambda v: [_email(a) for a in v])

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {v!r}") from e
        return v

    @field_validator("number_format")
    @classmethod
    def _fmt(cls, v: str) -> str:
        try:
            v.format(year=2026, seq=1)
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"bad format {v!r}: only {{year}} and {{seq}} may be used") from e
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def own_addresses(self) -> set[str]:
        own = {self.address, self.operators_address, *self.aliases}
        if self.comment_address:
            own.add(self.comment_address)
        return own


class DatabaseConfig(_Model):
    url: str = ""


class Secret(_Model):
    """Mixin: a password read from `password_file` at load time."""

    password_file: Path | None = None
    password: SecretStr | None = None  # filled from password_file; not for the TOML file


class MailboxConfig(Secret):
    name: str
    type: Literal["imap", "maildir"] = "imap"
    path: Path | None = None  # maildir
    host: str = "localhost"
    port: int | None = None
    security: Literal["ssl", "starttls", "none"] = "ssl"
    username: str = ""
    folder: str = "INBOX"
    processed_folder: str = "maild/processed"
    quarantine_folder: str = "maild/quarantine"
    receipts_folder: str = "maild/receipts"  # PEC receipts that match no ticket
    idle: bool = True
    poll_interval: float = Field(60, gt=0)
    fetch_batch: int = Field(250, gt=0, le=5000)
    timeout: float = Field(30, gt=0)
    tls_ca_file: Path | None = None  # a private CA for the server's certificate

    @model_validator(mode="after")
    def _kind(self) -> MailboxConfig:
        if self.type == "maildir" and self.path is None:
            raise ValueError("a maildir mailbox needs `path`")
        return self

    @property
    def effective_port(self) -> int:
        if self.port:
            return self.port
        return 993 if self.security == "ssl" else 143

    def folder_for(self, destination: str) -> str:
        """IngestResult.folder ("processed", "quarantine", "receipts") -> folder name."""
        return {
            "quarantine": self.quarantine_folder,
            "receipts": self.receipts_folder,
        }.get(destination, self.processed_folder)


class SmtpConfig(Secret):
    transport: Literal["smtp", "maildir"] = "smtp"
    path: Path | None = None  # maildir transport
    host: str = "localhost"
    port: int | None = None
    security: Literal["ssl", "starttls", "none"] = "starttls"
    username: str = ""
    timeout: float = Field(30, gt=0)
    max_attempts: int = Field(0, ge=0)  # 0: retry forever
    retry_base: float = Field(30, gt=0)  # seconds, doubled each attempt
    retry_max: float = Field(3600, gt=0)
    tls_ca_file: Path | None = None  # a private CA for the server's certificate

    @model_validator(mode="after")
    def _kind(self) -> SmtpConfig:
        if self.transport == "maildir" and self.path is None:
            raise ValueError("the maildir transport needs `path`")
        return self

    @property
    def effective_port(self) -> int:
        if self.port:
            return self.port
        return {"ssl": 465, "starttls": 587, "none": 25}[self.security]


class OperatorConfig(_Model):
    name: str
    email: Email
    role: Literal["operator", "coordinator"] = "operator"
    _chk = field_validator("email")(lambda v: _email(v))


class EnteConfig(_Model):
    name: str
    domains: list[str] = []
    addresses: list[Email] = []  # single addresses (e.g. personal mailboxes of employees)
    profile: Profile = "MINIMAL"
    province: str | None = None
    referent: Email | None = None
    closed_days: list[str] = []  # "YYYY-MM-DD" or yearly "MM-DD"

    _chk_ref = field_validator("referent")(lambda v: None if v is None else _email(v))
    _chk_addrs = field_validator("addresses")(lambda v: [_email(a) for a in v])

    @field_validator("domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        return [d.strip().lower().lstrip("@") for d in v]

    @field_validator("closed_days")
    @classmethod
    def _days(cls, v: list[str]) -> list[str]:
        for d in v:
            try:
                if re.fullmatch(r"\d{2}-\d{2}", d):
                    date(2024, int(d[:2]), int(d[3:]))  # 2024: leap year accepts 02-29
                else:
                    date.fromisoformat(d)
            except ValueError as e:
                raise ValueError(f"{d!r} is neither a YYYY-MM-DD nor a MM-DD date") from e
        return v


class EscalationLevel(_Model):
    fraction: float = Field(gt=0)  # of the target: 0.75, 1.0, 1.5
    notify: list[Literal["operators", "coordinators", "referent", "assignee"]]
    enabled: bool = True


class SlaConfig(_Model):
    take_charge_hours: dict[PriorityName, float] = {"ALTA": 8, "MEDIA": 12, "BASSA": 16}
    compliance_threshold: float = Field(0.9, gt=0, le=1)
    # the requester may ask for a priority with the Importance/X-Priority header
    use_priority_headers: bool = False
    # words that raise a request's priority (never lower it)
    keyword_rules: dict[str, PriorityName] = {
        "bloccante": "ALTA",
        "non riesco a lavorare": "ALTA",
        "non riusciamo a lavorare": "ALTA",
    }
    # working time; see config/maild.example.toml ([sla.calendar])
    calendar: dict = {}
    # escalation levels as fractions of each target (maild.sla.escalation)
    escalation: list[EscalationLevel] = [
        EscalationLevel(fraction=0.75, notify=["operators"]),
        EscalationLevel(fraction=1.0, notify=["coordinators"]),
        EscalationLevel(fraction=1.5, notify=["referent", "coordinators"], enabled=False),
    ]
    # optional resolution targets (working hours; the clock pauses while in_attesa)
    resolution_hours: dict[PriorityName, float] = {}
    # daily digest of overdue tickets to the coordinators; None: start of the working day
    digest: bool = True
    digest_time: time | None = None

    @field_validator("take_charge_hours")
    @classmethod
    def _all_priorities(cls, v: dict[str, float]) -> dict[str, float]:
        missing = {"ALTA", "MEDIA", "BASSA"} - set(v)
        if missing:
            raise ValueError(f"missing target for {', '.join(sorted(missing))}")
        if any(h <= 0 for h in v.values()):
            raise ValueError("targets must be positive hours")
        return v

    @field_validator("escalation")
    @classmethod
    def _levels(cls, v: list[EscalationLevel]) -> list[EscalationLevel]:
        percents = [round(level.fraction * 100) for level in v]
        if len(percents) != len(set(percents)):
            raise ValueError("two escalation levels share a fraction")
        return sorted(v, key=lambda level: level.fraction)

    @field_validator("calendar")
    @classmethod
    def _calendar(cls, v: dict) -> dict:
        from maild.sla.calendar import CalendarConfig

        CalendarConfig.from_dict({"timezone": "Europe/Rome", **v})  # raises ValueError
        return v


class LifecycleConfig(_Model):
    """Ticket lifecycle and who may add to a ticket (maild.operators)."""

    # a resolved ticket closes after this many working days (the contract's warranty)
    warranty_working_days: int = Field(10, ge=0)
    # people the requester puts in To/Cc follow the ticket and may write on it
    watchers: bool = True
    # any address of the ticket's ente may write on it
    same_ente_follow_up: bool = False
    # subjects that ask for the sender's open tickets
    status_subjects: list[str] = ["stato", "i miei ticket", "status"]


class LoggingConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Config(_Model):
    service: ServiceConfig
    database: DatabaseConfig = DatabaseConfig()
    mailbox: list[MailboxConfig] = []
    smtp: SmtpConfig = SmtpConfig()
    operator: list[OperatorConfig] = []
    ente: list[EnteConfig] = []
    sla: SlaConfig = SlaConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    logging: LoggingConfig = LoggingConfig()
    backup_job: list[BackupJobConfig] = []
    backup_rule: list[BackupRuleConfig] = []
    backup: BackupSettings = BackupSettings()
    source: Path | None = None  # the file this was loaded from

    @model_validator(mode="after")
    def _unique(self) -> Config:
        names = [m.name for m in self.mailbox]
        if len(names) != len(set(names)):
            raise ValueError("two [[mailbox]] entries share a name")
        seen: dict[str, str] = {}
        for e in self.ente:
            for d in e.domains:
                if d in seen:
                    raise ValueError(f"domain {d!r} belongs to both {seen[d]!r} and {e.name!r}")
                seen[d] = e.name
        check_backup_config(self)  # jobs name configured enti and known products
        return self

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.service.state_dir / 'maild.db'}"

    def operator_by_email(self, address: str) -> OperatorConfig | None:
        address = address.lower()
        return next((o for o in self.operator if o.email == address), None)

    def ente_for(self, address: str) -> EnteConfig | None:
        """The ente an address belongs to, by exact address then by domain (or parent domain)."""
        address = address.lower()
        for e in self.ente:
            if address in e.addresses:
                return e
        domain = address.rpartition("@")[2]
        for e in self.ente:
            for d in e.domains:
                if domain == d or domain.endswith("." + d):
                    return e
        return None

    def ente_by_name(self, name: str) -> EnteConfig | None:
        name = name.strip().lower()
        return next((e for e in self.ente if e.name.lower() == name), None)


def _location(loc: tuple) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts[-1] = f"{parts[-1]}[{p}]" if parts else f"[{p}]"
        else:
            parts.append(str(p))
    return ".".join(parts) or "(top level)"


def _read_secret(path: Path, where: str, source: Path | None) -> SecretStr:
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    candidates: list[Path] = []
    if creds:  # systemd LoadCredential=: the credential's name is the file's name
        candidates.append(Path(creds) / path.name)
    if path.is_absolute():
        candidates.insert(0, path)
    elif source is not None:
        candidates.append(source.parent / path)  # relative to the configuration file
    for p in candidates:
        try:
            return SecretStr(p.read_text(encoding="utf-8").strip())
        except OSError:
            continue
    raise ConfigError(f"{source or '<config>'}: {where}.password_file: cannot read {path}")


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate the configuration; raises ConfigError with file, key and reason."""
    if path is None:
        path = os.environ.get("MAILD_CONFIG")
    if not path:
        raise ConfigError("no configuration: give --config PATH or set MAILD_CONFIG")
    src = Path(path)
    try:
        data = tomllib.loads(src.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{src}: cannot read: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{src}: not valid TOML: {e}") from e
    return config_from_dict(data, src)


def config_from_dict(data: dict, source: Path | None = None) -> Config:
    for section in ("mailbox", "smtp"):  # passwords only ever come from files
        items = data.get(section, [])
        for item in items if isinstance(items, list) else [items]:
            if isinstance(item, dict) and "password" in item:
                raise ConfigError(
                    f"{source or '<config>'}: {section}.password: write the password in a file "
                    "and give its path as password_file"
                )
    try:
        cfg = Config.model_validate({**data, "source": source})
    except ValidationError as e:
        lines = []
        for err in e.errors():
            given = err.get("input")
            shown = f" (given: {given!r})" if isinstance(given, str | int | float) else ""
            lines.append(f"{source or '<config>'}: {_location(err['loc'])}: {err['msg']}{shown}")
        raise ConfigError("\n".join(lines)) from None
    # resolve secrets now, so a missing file is a start-up error, not a 3 a.m. surprise
    mailboxes = []
    for i, m in enumerate(cfg.mailbox):
        if m.password_file is not None:
            m = m.model_copy(
                update={"password": _read_secret(m.password_file, f"mailbox[{i}]", source)}
            )
        mailboxes.append(m)
    smtp = cfg.smtp
    if smtp.password_file is not None:
        smtp = smtp.model_copy(
            update={"password": _read_secret(smtp.password_file, "smtp", source)}
        )
    return cfg.model_copy(update={"mailbox": mailboxes, "smtp": smtp})


def parse_closed_day(value: str) -> tuple[int | None, int, int]:
    """'2026-06-29' -> (2026, 6, 29); '06-29' (every year) -> (None, 6, 29)."""
    if len(value) == 5:
        return None, int(value[:2]), int(value[3:])
    d = date.fromisoformat(value)
    return d.year, d.month, d.day


__all__ = [
    "Config",
    "ConfigError",
    "EnteConfig",
    "MailboxConfig",
    "OperatorConfig",
    "SmtpConfig",
    "load_config",
    "config_from_dict",
    "time",
]
