"""`maild backup status [--json]`: each job's last report, failures, next deadline, incident;
and the reports of jobs nobody configured."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select

from maild.backup.jobs import ente_of, next_deadline
from maild.backup.models import BackupJobState, BackupUnknownJob
from maild.config import Config
from maild.db import Database
from maild.models import OPEN_STATUSES, Ticket


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def backup_status(cfg: Config, db: Database, now: datetime) -> dict[str, Any]:
    jobs = []
    with db.session() as s:
        states = {st.job_key: st for st in s.scalars(select(BackupJobState))}
        for job in cfg.backup_job:
            st = states.get(job.key)
            ticket = s.get(Ticket, st.open_ticket_id) if st and st.open_ticket_id else None
            if ticket is not None and ticket.status not in OPEN_STATUSES:
                ticket = None
            jobs.append(
                {
                    "ente": ente_of(cfg, job).name,
                    "job": job.name,
                    "product": job.product,
                    "host": job.host,
                    "schedule": job.schedule,
                    "expected_by": job.expected_by,
                    "last_report_at": _iso(st.last_report_at if st else None),
                    "last_status": st.last_status if st else None,
                    "consecutive_failures": st.consecutive_failures if st else 0,
                    "next_expected": _iso(next_deadline(cfg, job, now)),
                    "open_incident": ticket.number if ticket is not None else None,
                }
            )
        unknown = [
            {
                "product": u.product,
                "job": u.job_name,
                "host": u.host,
                "sender": u.sender,
                "first_seen": _iso(u.first_seen),
                "last_seen": _iso(u.last_seen),
                "last_status": u.last_status,
                "reports": u.reports,
            }
            for u in s.scalars(select(BackupUnknownJob).order_by(BackupUnknownJob.id))
        ]
    return {"jobs": jobs, "unknown": unknown}


def format_status(data: dict[str, Any], cfg: Config) -> str:
    tz = cfg.service.tz

    def local(value: str | None) -> str:
        if not value:
            return "-"
        return datetime.fromisoformat(value).astimezone(tz).strftime("%d/%m %H:%M")

    lines = []
    if not data["jobs"]:
        lines.append("(no [[backup_job]] configured)")
    else:
        lines.append(
            f"{'ENTE':<28} {'JOB':<32} {'LAST REPORT':<12} {'STATUS':<8} "
            f"{'FAIL':>4} {'NEXT DUE':<12} INCIDENT"
        )
        for j in data["jobs"]:
            lines.append(
                f"{j['ente'][:28]:<28} {j['job'][:32]:<32} {local(j['last_report_at']):<12} "
                f"{j['last_status'] or '-':<8} {j['consecutive_failures']:>4} "
                f"{local(j['next_expected']):<12} {j['open_incident'] or '-'}"
            )
    if data["unknown"]:
        lines.append("")
        lines.append("Unknown jobs (reports matching no [[backup_job]]):")
        for u in data["unknown"]:
            lines.append(
                f"  {u['product']}: {u['job'] or u['host'] or '?'} from {u['sender']}, "
                f"last {local(u['last_seen'])} {u['last_status']} ({u['reports']} report(s))"
            )
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction, load: Callable[[argparse.Namespace], Config]):
    """Adds `maild backup status [--json]` to the CLI; `load` reads the configuration."""

    def cmd(args: argparse.Namespace) -> int:
        from sqlalchemy.exc import OperationalError, ProgrammingError

        from maild.clock import SystemClock

        cfg = load(args)
        db = Database(cfg.database_url)
        try:
            data = backup_status(cfg, db, SystemClock().now())
        except (OperationalError, ProgrammingError) as e:
            print(f"maild backup status: database not ready ({e.orig}); run maild db upgrade")
            return 1
        finally:
            db.dispose()
        if args.json:
            print(json.dumps(data, ensure_ascii=False, indent=2))
        else:
            print(format_status(data, cfg))
        return 0

    backup = sub.add_parser("backup", help="backup control")
    commands = backup.add_subparsers(dest="backup_cmd", required=True)
    status = commands.add_parser("status", help="each backup job's last report and incident")
    status.add_argument("--json", action="store_true")
    status.set_defaults(fn=cmd)
