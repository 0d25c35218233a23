"""Monthly SLA report: figures checked against values computed by hand; CLI formats;
`maild ticket list` ordering by the ente's precedence then deadline.

Office hours 08:30-12:30, 14:00-18:00 Europe/Rome (October 2026: CEST until the 25th).
Targets: ALTA 8 h, MEDIA 12 h, BASSA 16 h; threshold 90%.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from maild.cli import main
from maild.db import Database
from maild.models import Ticket
from maild.sla.deadline import take_charge_due
from maild.sla.report import format_csv, format_json, format_text, p90, sla_report

from .conftest import make_config

ROME = ZoneInfo("Europe/Rome")
VAIANO, BAGNOLO = "Comune di Vaiano Cremasco", "Comune di Bagnolo Cremasco"


def at(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=ROME)


# (ente, priority, received, taken in charge or None)
TICKETS = [
    # MEDIA, all received Monday 12 October 08:30 (due Tuesday 12:30)
    (VAIANO, "MEDIA", at(10, 12, 8, 30), at(10, 12, 10, 30)),  # 2 h
    (VAIANO, "MEDIA", at(10, 12, 8, 30), at(10, 12, 16)),  # 4 + 2 = 6 h
    (VAIANO, "MEDIA", at(10, 12, 8, 30), at(10, 13, 9, 30)),  # 8 + 1 = 9 h
    (VAIANO, "MEDIA", at(10, 12, 8, 30), at(10, 13, 12, 30)),  # 12 h, exactly on time
    (VAIANO, "MEDIA", at(10, 12, 8, 30), at(10, 14, 9, 30)),  # 8 + 8 + 1 = 17 h: breach
    # ALTA
    (VAIANO, "ALTA", at(10, 12, 12), at(10, 12, 14, 30)),  # 0.5 + 0.5 = 1 h
    (VAIANO, "ALTA", at(10, 12, 17), None),  # due Tuesday 17:00, never taken: breach
    (VAIANO, "ALTA", at(10, 30, 17, 30), None),  # due Monday 2 November: pending
    (BAGNOLO, "ALTA", at(10, 12, 9), at(10, 12, 9, 30)),  # 0.5 h
    # BASSA: 1 October 00:15 local is still 30 September in UTC, and in the month
    (VAIANO, "BASSA", at(10, 1, 0, 15), at(10, 1, 10)),  # 1.5 h
    # outside October in local time
    (VAIANO, "MEDIA", at(9, 30, 23, 50), at(10, 1, 9)),
    (VAIANO, "MEDIA", at(11, 1, 0, 30), None),
]
NOW = at(10, 31, 12)  # Saturday 31 October


def fill(db: Database, cfg) -> list[str]:
    numbers = []
    with db.transaction() as s:
        for i, (ente, priority, received, taken) in enumerate(TICKETS, start=1):
            number = f"2026-{i:06d}"
            s.add(
                Ticket(
                    number=number,
                    year=2026,
                    seq=i,
                    title=f"richiesta {i}",
                    status="in_carico" if taken else "nuovo",
                    priority=priority,
                    ente=ente,
                    requester_email="x@comune.example",
                    created_at=received,
                    updated_at=taken or received,
                    taken_at=taken,
                    sla_due_at=take_charge_due(cfg, cfg.ente_by_name(ente), priority, received),
                )
            )
            numbers.append(number)
    return numbers


@pytest.fixture
def filled(state_dir, db_url):
    cfg = make_config(state_dir, db_url=db_url)
    db = Database(db_url)
    db.upgrade()
    numbers = fill(db, cfg)
    yield cfg, db, numbers
    db.dispose()


def figures(report) -> dict[str, tuple]:
    return {
        f.priority: (
            f.tickets,
            f.within,
            f.breaches,
            f.pending,
            f.share,
            f.meets_threshold,
            f.median_hours,
            f.p90_hours,
        )
        for f in report.figures
    }


def test_report_figures_match_hand_computed_values(filled):
    cfg, db, numbers = filled
    with db.session() as s:
        report = sla_report(s, cfg, "2026-10", NOW)
    assert figures(report) == {
        # within 4 of 5; median of 2 6 9 12 17; p90 nearest rank: 5th of 5
        "MEDIA": (5, 4, 1, 0, 0.8, False, 9.0, 17.0),
        # one pending; within 2 of 3; median of 0.5 1; p90: 2nd of 2
        "ALTA": (4, 2, 1, 1, 0.6667, False, 0.75, 1.0),
        "BASSA": (1, 1, 0, 0, 1.0, True, 1.5, 1.5),
        # 0.5 1 1.5 2 6 9 12 17: median (2 + 6) / 2, p90: 8th of 8
        "TOTALE": (10, 7, 2, 1, 0.7778, False, 4.0, 17.0),  # 7 of 9 decided
    }
    breaches = [(b.number, b.priority, b.taken_at is not None, b.hours) for b in report.breaches]
    # the untaken ALTA of a PRO comune: 1 h Monday, 8 h on each working day 13-30 October
    # (14 days), and Saturday on-call: 4 h on the 17th and the 24th, 08:30-12:00 today
    expected_hours = 1 + 14 * 8 + 4 + 4 + 3.5
    assert breaches == [
        (numbers[4], "MEDIA", True, 17),
        (numbers[6], "ALTA", False, expected_hours),
    ]
    assert report.breaches[1].due_at == at(10, 13, 17).isoformat()

    with db.session() as s:
        bagnolo = sla_report(s, cfg, "2026-10", NOW, ente="comune di bagnolo cremasco")
    assert bagnolo.ente == BAGNOLO
    assert figures(bagnolo)["ALTA"] == (1, 1, 0, 0, 1.0, True, 0.5, 0.5)
    assert figures(bagnolo)["MEDIA"] == (0, 0, 0, 0, None, None, None, None)

    with db.session() as s:  # the month before: only the ticket of 30 September
        september = sla_report(s, cfg, "2026-09", NOW)
    assert figures(september)["MEDIA"][:2] == (1, 1)
    assert figures(september)["MEDIA"][6] == 0.5  # 08:30-09:00 on 1 October


def test_p90_is_nearest_rank():
    assert p90([1.0]) == 1.0
    assert p90([float(x) for x in range(1, 11)]) == 9.0
    assert p90([float(x) for x in range(1, 12)]) == 10.0


def test_formats(filled):
    cfg, db, numbers = filled
    with db.session() as s:
        report = sla_report(s, cfg, "2026-10", NOW)
    text = format_text(report)
    assert "SLA presa in carico - 2026-10" in text
    media = next(line for line in text.splitlines() if line.startswith("MEDIA"))
    assert media.split() == ["MEDIA", "12", "5", "4", "1", "0", "80.0%", "SOTTO", "9", "17"]
    assert "BASSA" in text and "Fuori target: 2" in text and numbers[4] in text
    data = json.loads(format_json(report))
    assert data["threshold"] == 0.9
    assert [f["priority"] for f in data["figures"]] == ["ALTA", "MEDIA", "BASSA", "TOTALE"]
    assert data["breaches"][0]["number"] == numbers[4]
    summary, breaches = format_csv(report).split("\n\n")
    rows = list(csv.DictReader(io.StringIO(summary)))
    assert rows[1]["priority"] == "MEDIA" and rows[1]["share"] == "0.8"
    assert rows[1]["meets_threshold"] == "False" and rows[1]["p90_hours"] == "17.0"
    assert [r["number"] for r in csv.DictReader(io.StringIO(breaches))] == [numbers[4], numbers[6]]


def write_config(path: Path, state: Path, url: str) -> Path:
    path.write_text(
        f"""
[service]
address = "supporto@consorzio.example"
operators_address = "operatori@consorzio.example"
state_dir = "{state}"

[database]
url = "{url}"

[[ente]]
name = "{VAIANO}"
domains = ["comune.vaiano-cremasco.cr.it"]
profile = "PRO"
province = "CR"

[[ente]]
name = "{BAGNOLO}"
domains = ["comune.bagnolo-cremasco.cr.it"]
profile = "MINIMAL"
province = "CR"

[[ente]]
name = "Comune di Crema"
domains = ["comune.crema.cr.it"]
profile = "ENTERPRISE"
province = "CR"
""",
        encoding="utf-8",
    )
    return path


def test_cli_report_in_each_format(state_dir, tmp_path, capsys):
    url = f"sqlite:///{state_dir / 'maild.db'}"
    conf = write_config(tmp_path / "maild.toml", state_dir, url)
    cfg = make_config(state_dir, db_url=url)
    db = Database(url)
    db.upgrade()
    fill(db, cfg)
    db.dispose()
    base = ["--config", str(conf), "sla", "report", "--month", "2026-10"]
    # taken tickets only in MEDIA and BASSA: these figures do not depend on today's date

    assert main(base) == 0
    out = capsys.readouterr().out
    assert "MEDIA" in out and "80.0%" in out and "SOTTO" in out

    assert main([*base, "--format", "json", "--ente", BAGNOLO]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ente"] == BAGNOLO and data["figures"][0]["tickets"] == 1

    assert main([*base, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out.split("\n\n")[0])))
    assert {r["priority"]: r["tickets"] for r in rows}["BASSA"] == "1"

    assert main([*base, "--ente", "Comune di Nessuno"]) == 2
    assert "unknown ente" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--config", str(conf), "sla", "report", "--month", "ottobre"])


def test_ticket_list_orders_by_precedence_then_deadline(state_dir, tmp_path, capsys):
    url = f"sqlite:///{state_dir / 'maild.db'}"
    conf = write_config(tmp_path / "maild.toml", state_dir, url)
    db = Database(url)
    db.upgrade()
    # (number, ente, deadline, status)
    rows = [
        ("2026-000001", BAGNOLO, at(10, 12, 9), "nuovo"),  # MINIMAL, earliest deadline
        ("2026-000002", VAIANO, at(10, 14, 9), "nuovo"),  # PRO
        ("2026-000003", "Comune di Crema", at(10, 20, 9), "in_carico"),  # ENTERPRISE
        ("2026-000004", VAIANO, at(10, 13, 9), "in_attesa"),  # PRO, earlier than 2
        ("2026-000005", "Comune di Crema", at(10, 1, 9), "chiuso"),  # closed: last
        ("2026-000006", None, at(10, 2, 9), "nuovo"),  # unknown ente: no precedence
    ]
    with db.transaction() as s:
        for i, (number, ente, due, status) in enumerate(rows, start=1):
            s.add(
                Ticket(
                    number=number,
                    year=2026,
                    seq=i,
                    title="t",
                    status=status,
                    ente=ente,
                    requester_email="x@example.org",
                    created_at=at(10, 1, 9),
                    updated_at=at(10, 1, 9),
                    sla_due_at=due,
                )
            )
    db.dispose()
    assert main(["--config", str(conf), "ticket", "list", "--json"]) == 0
    listed = [r["number"] for r in json.loads(capsys.readouterr().out)]
    assert listed == [
        "2026-000003",
        "2026-000004",
        "2026-000002",
        "2026-000006",
        "2026-000001",
        "2026-000005",
    ]
