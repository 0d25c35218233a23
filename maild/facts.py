"""What the classifiers read from a message's MIME tree, read once and kept.

The facts need no database: whether the mail is automatic (and what bounced), whether it
is a PEC receipt, whether it carries a backup report. They are read in the parse stage
(maild.prepare), possibly in another process, and kept in `ParsedMessage.memo`; the
message can then drop its stdlib tree (`lighten`) and the rules still find them here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from maild import autodetect, pec

if TYPE_CHECKING:
    from maild.backup.report import BackupReport
    from maild.config import Config
    from maild.message import ParsedMessage

_MISSING = object()


def _memo(msg: ParsedMessage, key: str, compute, needs_tree: bool = True):
    value = msg.memo.get(key, _MISSING)
    if value is _MISSING:
        if needs_tree and msg.email is None:
            raise RuntimeError(f"fact {key!r} was not read before the message was lightened")
        value = msg.memo[key] = compute()
    return value


def auto_kind(msg: ParsedMessage) -> autodetect.AutoKind | None:
    """Bounce, auto-reply, bulk, or None for mail written by a person."""
    return _memo(msg, "auto", lambda: autodetect.classify_auto(msg.email, msg.subject, msg.headers))


def bounce(msg: ParsedMessage) -> autodetect.BounceInfo | None:
    """What bounced, and why (None unless auto_kind is BOUNCE)."""
    if auto_kind(msg) != autodetect.AutoKind.BOUNCE:
        return None
    return _memo(msg, "bounce", lambda: autodetect.bounce_info(msg.email))


def pec_info(msg: ParsedMessage) -> pec.PecInfo | None:
    return _memo(msg, "pec", lambda: pec.read_pec(msg.email))


def backup_report(msg: ParsedMessage, cfg: Config) -> tuple[BackupReport, set[str]] | None:
    """The backup report `msg` carries and the senders it came through (see
    maild.backup.intake.read_report)."""
    from maild.backup.intake import read_report

    return _memo(msg, "backup", lambda: read_report(cfg, msg))


def requested_priority(msg: ParsedMessage, cfg: Config) -> str | None:
    """The priority the sender asked for (keywords, the client's headers), or None."""
    return _memo(msg, "priority", lambda: _requested_priority(msg, cfg), needs_tree=False)


def _requested_priority(msg: ParsedMessage, cfg: Config) -> str | None:
    from maild.sla.priority import Priority
    from maild.sla.priority import requested_priority as find

    sla = cfg.sla
    headers = {h: msg.header(h) for h in ("Importance", "X-Priority", "Priority")}
    found = find(
        msg.subject,
        msg.text,
        {k: v for k, v in headers.items() if v},
        use_headers=sla.use_priority_headers,
        keyword_rules=[(k, Priority.parse(v)) for k, v in sla.keyword_rules.items()],
    )
    return found.name if found is not None else None


def read_all(msg: ParsedMessage, cfg: Config) -> None:
    """Every fact, now (before the message is lightened)."""
    bounce(msg)
    pec_info(msg)
    backup_report(msg, cfg)
    requested_priority(msg, cfg)
