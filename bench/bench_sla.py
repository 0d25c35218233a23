"""Benchmark: one SLA escalation check with 100,000 and 1,000,000 tickets, of which 100 due.

    python bench/bench_sla.py [--sizes 100000 1000000] [--due 100] [--trials 5] [--no-pg]

For each database (SQLite in a temporary file; PostgreSQL when it answers at
$MAILD_TEST_PG or 127.0.0.1:5432, in a private schema dropped afterwards) and size:
- fills the tickets table in SQL (generate_series / recursive CTE): closed tickets from
  the past, ~1,000 open tickets not yet due spread over 10 operators, and `--due` tickets
  whose take-charge deadline has just passed (their 75% reminder already sent), so the
  check marks each overdue and mails the coordinators with the assignee's open tickets;
- times the check (claim the due tickets, evaluate their clocks, record the levels, mark
  them overdue, set their next moment, commit) and, separately, the queueing of the
  mails it causes (render, build the MIME message, insert into the outbox), and the whole
  `run_due()`; `--trials` times, restoring the due tickets in between; and once more
  with nothing due.

Goal (issue 4): under 50 ms each, and at 1,000,000 no more than twice the time at 100,000.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import delete, func, select, text, update  # noqa: E402

from maild.clock import ManualClock  # noqa: E402
from maild.config import config_from_dict  # noqa: E402
from maild.db import Database  # noqa: E402
from maild.ingest import Runtime  # noqa: E402
from maild.log import configure_logging  # noqa: E402
from maild.models import MessageRef, OutboxMessage, Ticket, TicketEvent  # noqa: E402
from maild.sla.deadline import take_charge_due  # noqa: E402
from maild.sla.escalation import EscalationJob  # noqa: E402
from maild.sla.models import SlaEscalation  # noqa: E402

ROME = ZoneInfo("Europe/Rome")
NOW = datetime(2026, 4, 15, 11, 0, tzinfo=ROME)  # a Wednesday morning
PG_URL = os.environ.get("MAILD_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
OPEN_TICKETS = 1000
OPERATORS = [f"operatore{i}@consorzio.example" for i in range(10)]
ENTE = "Comune di Vaiano Cremasco"


def config(state: Path, url: str):
    return config_from_dict(
        {
            "service": {
                "address": "supporto@consorzio.example",
                "operators_address": "operatori@consorzio.example",
                "state_dir": str(state),
            },
            "database": {"url": url},
            "operator": [
                {
                    "name": "Laura Bianchi",
                    "email": "laura.bianchi@consorzio.example",
                    "role": "coordinator",
                }
            ]
            + [{"name": f"Operatore {i}", "email": e} for i, e in enumerate(OPERATORS)],
            "ente": [
                {
                    "name": ENTE,
                    "domains": ["comune.vaiano-cremasco.cr.it"],
                    "profile": "PRO",
                    "province": "CR",
                }
            ],
        }
    )


def fill_sql(dialect: str, n: int) -> str:
    """Closed tickets 1..n, received one a minute from 2024 onwards, all taken in time."""
    ops = "ARRAY[" + ",".join(f"'{o}'" for o in OPERATORS) + "]"
    if dialect == "postgresql":
        ts = "(timestamp '2024-01-01' + g * interval '1 minute')"
        return f"""
        INSERT INTO tickets (number, year, seq, title, status, priority, kind, ente,
            requester_email, requester_name, assignee, created_at, updated_at, taken_at,
            sla_due_at, sla_check_at, overdue, watchers)
        SELECT 'B-' || g, 2024, g, 'richiesta ' || g, 'chiuso', 'MEDIA', 'richiesta', '{ENTE}',
            'utente' || (g % 500) || '@comune.vaiano-cremasco.cr.it', '',
            ({ops})[1 + g % 10], {ts}, {ts} + interval '2 hours', {ts} + interval '1 hour',
            {ts} + interval '12 hours', NULL, false, '[]'
        FROM generate_series(1, {n}) AS g
        """
    ts = "strftime('%Y-%m-%d %H:%M:%S.000000', '2024-01-01', '+' || g || ' minutes'{})"
    ops_case = (
        "CASE g % 10 " + " ".join(f"WHEN {i} THEN '{o}'" for i, o in enumerate(OPERATORS)) + " END"
    )
    return f"""
    WITH RECURSIVE c(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM c WHERE g < {n})
    INSERT INTO tickets (number, year, seq, title, status, priority, kind, ente,
        requester_email, requester_name, assignee, created_at, updated_at, taken_at,
        sla_due_at, sla_check_at, overdue, watchers)
    SELECT 'B-' || g, 2024, g, 'richiesta ' || g, 'chiuso', 'MEDIA', 'richiesta', '{ENTE}',
        'utente' || (g % 500) || '@comune.vaiano-cremasco.cr.it', '', {ops_case},
        {ts.format("")}, {ts.format(", '+2 hours'")}, {ts.format(", '+1 hours'")},
        {ts.format(", '+12 hours'")}, NULL, 0, '[]'
    FROM c
    """


def fill(db: Database, cfg, n: int, due: int) -> list[int]:
    """n tickets in all: n - OPEN_TICKETS - due closed, OPEN_TICKETS open and not due,
    `due` due now. Returns the ids of the due ones."""
    ente = cfg.ente_by_name(ENTE)
    with db.transaction() as s:
        s.execute(text(fill_sql(db.engine.dialect.name, n - OPEN_TICKETS - due)))
    now = NOW.astimezone(UTC)
    rows = []
    # open, received this morning: due tomorrow, their next look at 75% (later today)
    for i in range(OPEN_TICKETS):
        received = now - timedelta(minutes=30 + i % 60)
        rows.append((received, "in_carico", OPERATORS[i % 10], now + timedelta(hours=5), None))
    # due: received Monday morning (MEDIA, 12 h: due Tuesday afternoon), 75% already sent
    for i in range(due):
        received = datetime(2026, 4, 13, 9, 0, tzinfo=ROME) + timedelta(minutes=i)
        due_at = take_charge_due(cfg, ente, "MEDIA", received)
        rows.append((received, "nuovo", OPERATORS[i % 10], due_at, due_at))
    with db.transaction() as s:
        base = n - OPEN_TICKETS - due
        s.execute(
            Ticket.__table__.insert(),
            [
                dict(
                    number=f"2026-{k:06d}",
                    year=2026,
                    seq=k,
                    title=f"richiesta aperta {k}",
                    status=status,
                    priority="MEDIA",
                    kind="richiesta",
                    ente=ENTE,
                    requester_email="m.rossi@comune.vaiano-cremasco.cr.it",
                    requester_name="Marta Rossi",
                    assignee=assignee if status != "nuovo" else None,
                    created_at=received,
                    updated_at=received,
                    taken_at=received + timedelta(minutes=5) if status != "nuovo" else None,
                    sla_due_at=due_at if status == "nuovo" else received + timedelta(hours=20),
                    sla_check_at=check_at,
                    overdue=False,
                    watchers=[],
                )
                for k, (received, status, assignee, due_at, check_at) in enumerate(rows, base + 1)
            ],
        )
        # assign the due ones so the overdue mail lists an operator's open tickets
        due_ids = s.scalars(
            select(Ticket.id).where(Ticket.status == "nuovo").order_by(Ticket.id)
        ).all()
        for i, tid in enumerate(due_ids):
            s.execute(update(Ticket).where(Ticket.id == tid).values(assignee=OPERATORS[i % 10]))
        s.execute(
            SlaEscalation.__table__.insert(),
            [
                dict(
                    ticket_id=t,
                    target="take_charge",
                    level=75,
                    priority="MEDIA",
                    fired_at=now,
                    notified_at=now,
                )
                for t in due_ids
            ],
        )
    with db.engine.connect() as c:  # fresh statistics for the planner
        c.exec_driver_sql("ANALYZE")
        c.commit()
    return list(due_ids)


def reset(db: Database, due_ids: list[int]) -> None:
    """Put the due tickets back as they were before the check."""
    with db.transaction() as s:
        s.execute(delete(SlaEscalation).where(SlaEscalation.level != 75))
        s.execute(delete(MessageRef).where(MessageRef.message_id.like("<maild.%")))
        s.execute(delete(OutboxMessage))
        s.execute(delete(TicketEvent).where(TicketEvent.field == "overdue"))
        s.execute(
            update(Ticket)
            .where(Ticket.id.in_(due_ids))
            .values(sla_check_at=Ticket.sla_due_at, overdue=False)
        )


def run(url: str, state: Path, n: int, due: int, trials: int) -> dict:
    cfg = config(state, url)
    db = Database(url)
    db.upgrade()
    t0 = time.perf_counter()
    due_ids = fill(db, cfg, n, due)
    filled = time.perf_counter() - t0
    rt = Runtime.create(cfg, db=db, clock=ManualClock(NOW))
    job = EscalationJob()
    now = rt.clock.now()
    job.run_due(rt)  # warm up: templates compiled, calendars built, connections open
    checks, mails, totals = [], [], []
    for _ in range(trials):
        reset(db, due_ids)
        t = time.perf_counter()
        while job.check(rt, now) == job.batch:  # what run_due does, phase by phase
            pass
        t1 = time.perf_counter()
        while job.notify(rt, now) == job.batch:
            pass
        with db.session() as s:
            s.scalar(select(func.min(Ticket.sla_check_at)))
        t2 = time.perf_counter()
        checks.append((t1 - t) * 1000)
        mails.append((t2 - t1) * 1000)
        with db.session() as s:
            sent = s.scalar(select(func.count()).select_from(OutboxMessage))
        assert sent == due, f"expected {due} mails, got {sent}"
        reset(db, due_ids)
        t = time.perf_counter()
        job.run_due(rt)
        totals.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    job.run_due(rt)
    idle = (time.perf_counter() - t) * 1000
    db.dispose()
    return {
        "fill_s": filled,
        "check_ms": statistics.median(checks),
        "mails_ms": statistics.median(mails),
        "total_ms": statistics.median(totals),
        "idle_ms": idle,
    }


def pg_schema() -> str | None:
    try:
        import psycopg

        with psycopg.connect(
            "host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True, connect_timeout=2
        ) as c:
            schema = f"bench_sla_{uuid.uuid4().hex[:8]}"
            c.execute(f"CREATE SCHEMA {schema}")
            return schema
    except Exception as e:
        print(f"PostgreSQL not reachable ({type(e).__name__}): SQLite only", file=sys.stderr)
        return None


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(
        "host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True
    ) as c:
        c.execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--due", type=int, default=100)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    configure_logging("warning", "console")
    backends = ["sqlite"] + ([] if args.no_pg else ["postgresql"])
    results: dict[tuple[str, int], dict] = {}
    for backend in backends:
        for n in args.sizes:
            with tempfile.TemporaryDirectory(prefix="maild-bench-sla-") as tmp:
                state = Path(tmp)
                if backend == "sqlite":
                    url = f"sqlite:///{state / 'maild.db'}"
                    schema = None
                else:
                    schema = pg_schema()
                    if schema is None:
                        break
                    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
                try:
                    r = run(url, state, n, args.due, args.trials)
                finally:
                    if schema:
                        drop_schema(schema)
            results[(backend, n)] = r
            print(
                f"{backend:<10} {n:>9,} tickets, {args.due} due: check {r['check_ms']:6.1f} ms, "
                f"then queueing {args.due} mails {r['mails_ms']:6.1f} ms "
                f"(run_due in all {r['total_ms']:.1f} ms; nothing due {r['idle_ms']:.1f} ms; "
                f"medians of {args.trials}) [filled in {r['fill_s']:.0f} s]",
                flush=True,
            )
    ok = True
    for backend in backends:
        got = [results[(backend, n)]["check_ms"] for n in args.sizes if (backend, n) in results]
        if not got:
            continue
        under = all(ms < 50 for ms in got)
        ratio = got[-1] / got[0] if len(got) > 1 else 1.0
        print(
            f"{backend:<10} check under 50 ms: {'yes' if under else 'NO'}; "
            f"largest/smallest {ratio:.2f} (goal <= 2): {'yes' if ratio <= 2 else 'NO'}"
        )
        ok = ok and under and ratio <= 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
