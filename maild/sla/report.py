"""Monthly SLA report: `maild sla report --month 2026-10 [--ente NAME] [--format text|json|csv]`.

Tickets are those received in the month (local time). For each priority (the one in force
at the end, whose deadline `sla_due_at` is stored):
- within target: taken in charge no later than the deadline;
- breach: taken later, or not taken and the deadline has passed;
- pending: not taken and not yet due; counted in `tickets` only;
- share = within / (within + breaches), against `[sla] compliance_threshold`;
- median and 90th percentile of the take-charge time in working hours, over the tickets
  whose clock has stopped (nearest-rank percentile: the smallest value with at least 90%
  of the values at or below it).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import statistics
import sys
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import select

from maild.config import Config
from maild.models import Ticket
from maild.sla.deadline import take_charge_clock

PRIORITIES = ("ALTA", "MEDIA", "BASSA")
ALL = "TOTALE"


@dataclass
class Breach:
    number: str
    ente: str | None
    priority: str
    created_at: str
    due_at: str
    taken_at: str | None
    hours: float  # working hours to take charge (so far, when not taken)


@dataclass
class Figures:
    priority: str
    target_hours: float | None
    tickets: int = 0
    within: int = 0
    breaches: int = 0
    pending: int = 0
    share: float | None = None
    meets_threshold: bool | None = None
    median_hours: float | None = None
    p90_hours: float | None = None
    _hours: list[float] = field(default_factory=list, repr=False)


@dataclass
class Report:
    month: str
    ente: str | None
    threshold: float
    generated_at: str
    figures: list[Figures]
    breaches: list[Breach]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for f in data["figures"]:
            f.pop("_hours")
        return data


def parse_month(month: str) -> date:
    """'2026-10' -> date(2026, 10, 1)."""
    try:
        year, mon = (int(x) for x in month.split("-"))
        return date(year, mon, 1)
    except ValueError:
        raise ValueError(f"month must look like 2026-10, not {month!r}") from None


def month_bounds(month: str, cfg: Config) -> tuple[datetime, datetime]:
    """The month's first instant and the next month's first instant, local time."""
    first = parse_month(month)
    nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    tz = cfg.service.tz
    return datetime.combine(first, time(), tz), datetime.combine(nxt, time(), tz)


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


def _hours(td) -> float:
    return round(td.total_seconds() / 3600, 2)


def sla_report(session, cfg: Config, month: str, now: datetime, ente: str | None = None) -> Report:
    start, end = month_bounds(month, cfg)
    q = select(Ticket).where(
        Ticket.created_at >= start,
        Ticket.created_at < end,
        Ticket.merged_into_id.is_(None),
        Ticket.sla_due_at.is_not(None),
    )
    if ente:
        known = cfg.ente_by_name(ente)
        q = q.where(Ticket.ente == (known.name if known else ente))
    figures = {p: Figures(p, cfg.sla.take_charge_hours[p]) for p in PRIORITIES}
    total = Figures(ALL, None)
    breaches: list[Breach] = []
    tz = cfg.service.tz
    for t in session.scalars(q.order_by(Ticket.created_at, Ticket.id)):
        clock = take_charge_clock(cfg, t, now)
        for f in (figures[t.priority], total):
            f.tickets += 1
            if clock.breached:
                f.breaches += 1
            elif clock.running:
                f.pending += 1
            else:
                f.within += 1
            if not clock.running:
                f._hours.append(clock.elapsed.total_seconds() / 3600)
        if clock.breached:
            breaches.append(
                Breach(
                    t.number,
                    t.ente,
                    t.priority,
                    t.created_at.astimezone(tz).isoformat(),
                    t.sla_due_at.astimezone(tz).isoformat(),
                    t.taken_at.astimezone(tz).isoformat() if t.taken_at else None,
                    _hours(clock.elapsed),
                )
            )
    out = [*figures.values(), total]
    for f in out:
        decided = f.within + f.breaches
        if decided:
            f.share = round(f.within / decided, 4)
            f.meets_threshold = f.share >= cfg.sla.compliance_threshold
        if f._hours:
            f.median_hours = round(statistics.median(f._hours), 2)
            f.p90_hours = round(p90(f._hours), 2)
    return Report(
        month,
        cfg.ente_by_name(ente).name if ente and cfg.ente_by_name(ente) else ente,
        cfg.sla.compliance_threshold,
        now.astimezone(tz).isoformat(),
        out,
        breaches,
    )


# -- output -----------------------------------------------------------------------------

FIGURE_COLUMNS = [
    "priority",
    "target_hours",
    "tickets",
    "within",
    "breaches",
    "pending",
    "share",
    "meets_threshold",
    "median_hours",
    "p90_hours",
]
BREACH_COLUMNS = ["number", "ente", "priority", "created_at", "due_at", "taken_at", "hours"]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def format_text(r: Report) -> str:
    lines = [
        f"SLA presa in carico - {r.month}" + (f" - {r.ente}" if r.ente else ""),
        f"soglia di conformità {_pct(r.threshold)}; tempi in ore lavorative",
        "",
        f"{'PRIORITÀ':<8} {'TARGET':>6} {'TICKET':>6} {'ENTRO':>6} {'FUORI':>6} "
        f"{'IN CORSO':>8} {'QUOTA':>7} {'ESITO':<7} {'MEDIANA':>7} {'P90':>6}",
    ]
    for f in r.figures:
        verdict = "-" if f.meets_threshold is None else ("OK" if f.meets_threshold else "SOTTO")
        lines.append(
            f"{f.priority:<8} {_num(f.target_hours):>6} {f.tickets:>6} {f.within:>6} "
            f"{f.breaches:>6} {f.pending:>8} {_pct(f.share):>7} {verdict:<7} "
            f"{_num(f.median_hours):>7} {_num(f.p90_hours):>6}"
        )
    lines += ["", f"Fuori target: {len(r.breaches)}"]
    for b in r.breaches:
        taken = b.taken_at[:16].replace("T", " ") if b.taken_at else "non presa in carico"
        lines.append(
            f"  {b.number:<13} {b.priority:<6} {(b.ente or '-')[:28]:<28} "
            f"ricevuta {b.created_at[:16].replace('T', ' ')}  "
            f"scadenza {b.due_at[:16].replace('T', ' ')}  {taken}  {b.hours:g} h"
        )
    return "\n".join(lines)


def format_json(r: Report) -> str:
    return json.dumps(r.as_dict(), ensure_ascii=False, indent=2)


def format_csv(r: Report) -> str:
    """Two tables separated by an empty line: the figures, then the breaches."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FIGURE_COLUMNS)
    data = r.as_dict()
    for f in data["figures"]:
        w.writerow(["" if f[c] is None else f[c] for c in FIGURE_COLUMNS])
    w.writerow([])
    w.writerow(BREACH_COLUMNS)
    for b in data["breaches"]:
        w.writerow(["" if b[c] is None else b[c] for c in BREACH_COLUMNS])
    return buf.getvalue()


FORMATS = {"text": format_text, "json": format_json, "csv": format_csv}


# -- command line -----------------------------------------------------------------------


def cmd_sla_report(args: argparse.Namespace) -> int:
    from maild.cli import _config
    from maild.clock import SystemClock
    from maild.db import Database

    cfg = _config(args)
    if args.ente and cfg.ente_by_name(args.ente) is None:
        print(f"maild sla report: unknown ente {args.ente!r}", file=sys.stderr)
        return 2
    db = Database(cfg.database_url)
    try:
        with db.session() as s:
            report = sla_report(s, cfg, args.month, SystemClock().now(), args.ente)
    finally:
        db.dispose()
    print(FORMATS[args.format](report))
    return 0


def _month(value: str) -> str:
    try:
        parse_month(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def add_cli(sub: argparse._SubParsersAction) -> None:
    """`maild sla report ...`: registered by maild.cli.build_parser."""
    sla = sub.add_parser("sla", help="SLA figures")
    ss = sla.add_subparsers(dest="sla_cmd", required=True)
    rep = ss.add_parser("report", help="monthly take-charge report")
    rep.add_argument("--month", required=True, type=_month, help="YYYY-MM")
    rep.add_argument("--ente", help="only this ente (its configured name)")
    rep.add_argument("--format", choices=sorted(FORMATS), default="text")
    rep.set_defaults(fn=cmd_sla_report)
