"""Read-only views of tickets for the command line (and JSON for scripts)."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from maild.config import Config
from maild.db import Database
from maild.models import OPEN_STATUSES, Article, Ticket, TicketEvent

PRECEDENCE = {"MINIMAL": 0, "BASIC": 1, "PRO": 2, "ENTERPRISE": 3}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def ticket_dict(t: Ticket) -> dict[str, Any]:
    return {
        "number": t.number,
        "subject": t.title,
        "status": t.status,
        "priority": t.priority,
        "ente": t.ente,
        "requester": t.requester_email,
        "assignee": t.assignee,
        "created_at": _iso(t.created_at),
        "taken_at": _iso(t.taken_at),
        "sla_due_at": _iso(t.sla_due_at),
    }


def precedence(cfg: Config, ente_name: str | None) -> int:
    ente = cfg.ente_by_name(ente_name) if ente_name else None
    return PRECEDENCE[ente.profile] if ente else 0


def list_tickets(db: Database, cfg: Config, status: str | None = None) -> list[dict[str, Any]]:
    q = select(Ticket).where(Ticket.merged_into_id.is_(None))
    if status == "open":
        q = q.where(Ticket.status.in_(OPEN_STATUSES))
    elif status:
        q = q.where(Ticket.status == status)
    with db.session() as s:
        tickets = list(s.scalars(q.order_by(Ticket.id)))
    far = datetime.max.replace(tzinfo=None)

    def order(t: Ticket) -> tuple:
        # open tickets first, by the ente's precedence, then by the take-charge deadline
        is_open = t.status in OPEN_STATUSES
        due = t.sla_due_at.replace(tzinfo=None) if t.sla_due_at else far
        return (not is_open, -precedence(cfg, t.ente) if is_open else 0, due, t.id)

    return [ticket_dict(t) for t in sorted(tickets, key=order)]


def show_ticket(db: Database, cfg: Config, number: str) -> dict[str, Any] | None:
    with db.session() as s:
        t = s.scalar(
            select(Ticket)
            .where(Ticket.number == number)
            .options(selectinload(Ticket.articles).selectinload(Article.attachments))
        )
        if t is None:
            return None
        events = s.scalars(
            select(TicketEvent).where(TicketEvent.ticket_id == t.id).order_by(TicketEvent.id)
        ).all()
        data = ticket_dict(t)
        data["kind"] = t.kind
        data["category"] = t.category
        data["watchers"] = list(t.watchers or [])
        data["articles"] = [
            {
                "direction": a.direction,
                "internal": a.internal,
                "sender": a.sender,
                "recipients": list(a.recipients or []),
                "date": _iso(a.date),
                "message_id": a.message_id,
                "subject": a.subject,
                "body_text": a.body_text,
                "attachments": [
                    {"filename": x.filename, "size": x.size, "sha256": x.sha256}
                    for x in a.attachments
                ],
            }
            for a in t.articles
        ]
        data["history"] = [
            {
                "at": _iso(e.at),
                "actor": e.actor,
                "field": e.field,
                "old": e.old_value,
                "new": e.new_value,
            }
            for e in events
        ]
        return data


def _local(value: str | None, tz: tzinfo | None) -> str:
    """An ISO instant of the JSON form, shown in the service's time zone for people."""
    if not value:
        return ""
    moment = datetime.fromisoformat(value)
    return (moment.astimezone(tz) if tz else moment).strftime("%Y-%m-%d %H:%M")


def format_list(rows: list[dict[str, Any]], tz: tzinfo | None = None) -> str:
    if not rows:
        return "(no tickets)"
    lines = [f"{'NUMBER':<13} {'STATUS':<10} {'PRIO':<6} {'DUE':<17} {'ENTE':<28} SUBJECT"]
    for r in rows:
        due = _local(r["sla_due_at"], tz)
        lines.append(
            f"{r['number']:<13} {r['status']:<10} {r['priority']:<6} {due:<17} "
            f"{(r['ente'] or '-')[:28]:<28} {r['subject']}"
        )
    return "\n".join(lines)


def format_show(d: dict[str, Any], tz: tzinfo | None = None) -> str:
    out = [
        f"Ticket {d['number']}: {d['subject']}",
        f"  status {d['status']}, priority {d['priority']}, ente {d['ente'] or '-'}",
        f"  requester {d['requester']}, assignee {d['assignee'] or '-'}",
        f"  created {_local(d['created_at'], tz)}, taken {_local(d['taken_at'], tz) or '-'}, "
        f"due {_local(d['sla_due_at'], tz) or '-'}",
        "",
    ]
    for a in d["articles"]:
        flag = " (internal)" if a["internal"] else ""
        out.append(f"--- {a['direction']}{flag} {_local(a['date'], tz)} from {a['sender']}")
        out.append(a["body_text"].rstrip())
        for x in a["attachments"]:
            out.append(f"  [attachment] {x['filename']} ({x['size']} bytes)")
        out.append("")
    if d["history"]:
        out.append("History:")
        for e in d["history"]:
            out.append(
                f"  {_local(e['at'], tz)} {e['actor']}: {e['field']} {e['old'] or ''} -> {e['new'] or ''}"
            )
    return "\n".join(out)
