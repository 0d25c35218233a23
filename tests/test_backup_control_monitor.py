"""Missing backup reports and the morning summary, driven by an injected clock.

The monitor's `run_due` is called directly, as the scheduler would; "restarts" are new
Runtimes on the same database, "instances" are Runtimes racing in threads.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from maild.backup.jobs import deadlines_between, next_deadline, previous_deadline
from maild.backup.models import BackupCheck, BackupSummary
from maild.backup.monitor import MissingReportMonitor, MorningSummary, periodic_jobs
from maild.cli import main
from maild.clock import ManualClock
from maild.config import load_config

from .conftest import make_config
from .test_backup_control import (
    JOBS,
    M365,
    OPERATORS,
    VAIANO,
    articles,
    backup_config,
    ingest,
    outbox,
    report,
    runtime,
    tickets,
)

ROME = ZoneInfo("Europe/Rome")
NO_GRACE = timedelta(0)


def local(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A wall-clock moment in Rome, 2026, as the aware UTC datetime maild stores."""
    return datetime(2026, month, day, hour, minute, tzinfo=ROME).astimezone(UTC)


WEEKDAYS_JOB = {**JOBS[0], "name": M365, "schedule": "weekdays"}


def checks(rt) -> list[tuple[datetime, str]]:
    with rt.db.session() as s:
        rows = s.scalars(select(BackupCheck).order_by(BackupCheck.due_at, BackupCheck.job_key))
        return [(c.due_at, c.outcome) for c in rows]


def race(*calls) -> list:
    """Run the calls in threads released together; their results, in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int, call) -> None:
        try:
            barrier.wait()
            results[i] = call()
        except BaseException as e:  # re-raised in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    if errors:
        raise errors[0]
    return results


# -- schedules --------------------------------------------------------------------------


def test_schedules_skip_weekends_and_holidays_as_configured(state_dir):
    cfg = make_config(
        state_dir,
        backup_job=[
            {**WEEKDAYS_JOB},
            {**JOBS[0], "name": "daily"},
            {**JOBS[0], "name": "cron", "schedule": "0 22 * * 1-5"},
            {**JOBS[0], "name": "cron-h", "schedule": "0 3 * * *", "skip_holidays": True},
        ],
    )
    weekdays, daily, cron, cron_h = cfg.backup_job
    # Thursday 2 April 2026 08:00 -> Wednesday 8 April 08:00; Monday 6 April is Easter Monday
    a, b = local(4, 2, 8), local(4, 8, 8)
    at = lambda d: local(4, d, 7, 30)  # noqa: E731
    assert deadlines_between(cfg, weekdays, a, b) == [at(3), at(7), at(8)]
    assert deadlines_between(cfg, daily, a, b) == [at(d) for d in (3, 4, 5, 6, 7, 8)]
    # runs at 22:00 Monday to Friday: each report due the next morning
    assert deadlines_between(cfg, cron, a, b) == [at(3), at(4), at(7), at(8)]
    # Easter Sunday and Monday are holidays
    assert deadlines_between(cfg, cron_h, a, b) == [at(d) for d in (3, 4, 7, 8)]
    assert next_deadline(cfg, weekdays, local(4, 3, 8)) == at(7)
    assert previous_deadline(cfg, weekdays, at(7)) == at(3)
    # the deadline is local time whatever the offset (summer time began 29 March)
    march = deadlines_between(cfg, daily, local(3, 27, 8), local(3, 29, 8))
    assert [d.hour for d in march] == [6, 5]  # 07:30 CET, then 07:30 CEST, in UTC


def test_ente_closed_days_are_holidays_of_its_jobs(state_dir):
    from .conftest import ENTI

    enti = [{**ENTI[0], "closed_days": ["04-08"]}, ENTI[1]]
    cfg = make_config(state_dir, ente=enti, backup_job=[WEEKDAYS_JOB])
    job = cfg.backup_job[0]
    assert deadlines_between(cfg, job, local(4, 7, 8), local(4, 10, 8)) == [
        local(4, 9, 7, 30),
        local(4, 10, 7, 30),
    ]


# -- missing reports --------------------------------------------------------------------


def test_missing_report_across_a_weekend_and_a_holiday(state_dir, db_url):
    clock = ManualClock(local(4, 2, 6))  # Thursday 2 April 2026, 06:00
    cfg = backup_config(state_dir, db_url, jobs=[WEEKDAYS_JOB])
    rt = runtime(cfg, clock)
    monitor = MissingReportMonitor(rt, NO_GRACE)
    assert ingest(rt, report("veeam-m365-success.eml")).outcome == "backup_ok"
    assert monitor.run_due(rt) == local(4, 2, 7, 30)

    clock.set(local(4, 2, 7, 31))  # Thursday's report arrived: nothing to do
    assert monitor.run_due(rt) == local(4, 3, 7, 30)
    assert tickets(rt) == []

    clock.set(local(4, 3, 7, 31))  # Friday: nothing since Thursday's deadline
    # next due: Tuesday (Saturday, Sunday and Easter Monday are not scheduled)
    assert monitor.run_due(rt) == local(4, 7, 7, 30)
    [t] = tickets(rt)
    assert t.kind == "incidente" and t.ente == VAIANO and t.priority == "ALTA"
    assert t.title == f"Report di backup non ricevuto: {M365} (1 fallimento consecutivo)"
    [(row, mail)] = outbox(rt, "backup_missing")
    assert row.recipients == [OPERATORS] and t.number in mail["Subject"]
    body = mail.get_body(("plain",)).get_content()
    assert "entro le 07:30 del 03/04/2026" in body
    assert "Ultimo report ricevuto: 02/04/2026 06:00" in body
    [note] = articles(rt, t.number)
    assert note.direction == "note" and "07:30 del 03/04/2026" in note.body_text

    monitor.run_due(rt)  # again at once: judged already
    clock.set(local(4, 6, 12))  # Easter Monday: no report due, none judged
    monitor.run_due(rt)
    assert len(tickets(rt)) == 1 and len(outbox(rt, "backup_missing")) == 1

    # a restart: a new runtime and monitor on the same database repeat nothing
    rt.db.dispose()
    rt = runtime(cfg, clock)
    monitor = MissingReportMonitor(rt, NO_GRACE)
    monitor.run_due(rt)
    assert len(outbox(rt, "backup_missing")) == 1

    clock.set(local(4, 7, 7, 31))  # Tuesday: missed again, same incident
    assert monitor.run_due(rt) == local(4, 8, 7, 30)
    [t] = tickets(rt)
    assert t.title.endswith("(2 fallimenti consecutivi)")
    assert len(outbox(rt, "backup_missing")) == 2

    clock.set(local(4, 7, 9))  # the report arrives late: noted and resolved
    res = ingest(rt, report("veeam-m365-success.eml", 1))
    assert res.outcome == "backup_recovered" and res.ticket_number == t.number
    assert tickets(rt)[0].status == "risolto"

    clock.set(local(4, 8, 7, 31))  # Wednesday: Tuesday's late report counts
    monitor.run_due(rt)
    assert len(tickets(rt)) == 1
    assert checks(rt) == [
        (local(4, 2, 7, 30), "received"),
        (local(4, 3, 7, 30), "missed"),
        (local(4, 7, 7, 30), "missed"),
        (local(4, 8, 7, 30), "received"),
    ]
    rt.db.dispose()


def test_failure_incident_absorbs_a_missed_run(state_dir, db_url):
    clock = ManualClock(local(4, 2, 6))
    rt = runtime(backup_config(state_dir, db_url, jobs=[WEEKDAYS_JOB]), clock)
    monitor = MissingReportMonitor(rt, NO_GRACE)
    ingest(rt, report("veeam-m365-failure.eml"))
    clock.set(local(4, 3, 7, 31))
    monitor.run_due(rt)
    [t] = tickets(rt)  # one open incident per job
    assert t.title.startswith("Report di backup non ricevuto:") and "(2 fallimenti" in t.title
    rt.db.dispose()


def test_no_judgement_before_the_job_is_known_or_right_after_a_start(state_dir, db_url):
    clock = ManualClock(local(4, 3, 10))  # Friday 10:00: the 07:30 deadline has passed
    cfg = backup_config(
        state_dir, db_url, jobs=[WEEKDAYS_JOB], backup={"startup_grace_seconds": 120}
    )
    rt = runtime(cfg, clock)
    [monitor] = periodic_jobs(rt)
    # just started: reports still waiting in the inbox must be read first
    assert monitor.run_due(rt) == local(4, 3, 10, 2)
    clock.advance(minutes=3)
    monitor.run_due(rt)
    # a job first seen today is not blamed for this morning's deadline
    assert tickets(rt) == [] and checks(rt) == []
    clock.set(local(4, 7, 7, 31))
    monitor.run_due(rt)
    assert [c[1] for c in checks(rt)] == ["missed"]
    rt.db.dispose()


def test_each_missed_run_opens_one_incident_with_racing_instances(state_dir, db_url):
    names = [f"Backup {i}" for i in range(4)]
    jobs = [{**WEEKDAYS_JOB, "name": n} for n in names]
    cfg = backup_config(state_dir, db_url, jobs=jobs)
    clock = ManualClock(local(4, 2, 8))
    first = runtime(cfg, clock)
    MissingReportMonitor(first, NO_GRACE).run_due(first)  # the jobs become known
    instances = [first, runtime(cfg, clock), runtime(cfg, clock)]
    clock.set(local(4, 3, 7, 31))

    def three_runs(rt):
        monitor = MissingReportMonitor(rt, NO_GRACE)
        return [monitor.run_due(rt) for _ in range(3)]

    for _round in range(2):  # and once more after they all ran: nothing new
        race(*[lambda rt=rt: three_runs(rt) for rt in instances])
        assert len(tickets(first)) == len(jobs)
        assert sorted(t.title.split(":")[1].split("(")[0].strip() for t in tickets(first)) == names
        assert len(outbox(first, "backup_missing")) == len(jobs)
        assert checks(first) == [(local(4, 3, 7, 30), "missed")] * len(jobs)
    numbers = sorted(int(t.number.split("-")[1]) for t in tickets(first))
    assert numbers == list(range(1, len(jobs) + 1))  # no gaps from losers' rollbacks
    for rt in instances:
        rt.db.dispose()


def test_reports_of_one_job_racing_in_two_instances_share_one_incident(state_dir, db_url):
    cfg = backup_config(state_dir, db_url, jobs=[WEEKDAYS_JOB])
    clock = ManualClock(local(4, 2, 6))
    instances = [runtime(cfg, clock), runtime(cfg, clock)]
    rounds = 4
    for n in range(1, rounds + 1):
        # a success first (the job's state exists, its incident if any is resolved)
        ingest(instances[0], report("veeam-m365-success.eml", n))
        raws = [report("veeam-m365-failure.eml", n), report("veeam-m365-warning.eml", n)]
        results = race(
            *[
                lambda rt=rt, raw=raw: ingest(rt, raw).outcome
                for rt, raw in zip(instances, raws, strict=True)
            ]
        )
        assert sorted(results) == ["backup_incident", "backup_incident_updated"]
        assert len(tickets(instances[0])) == n
        assert tickets(instances[0])[-1].title.endswith("(2 fallimenti consecutivi)")
    for rt in instances:
        rt.db.dispose()


# -- morning summary --------------------------------------------------------------------


def test_morning_summary_lists_failures_first_once_a_day(state_dir, db_url):
    jobs = [
        {**JOBS[1]},  # WSB at Bagnolo: succeeds
        {**WEEKDAYS_JOB},  # fails
        {**WEEKDAYS_JOB, "name": "Copia notturna NAS"},  # never reports
    ]
    backup = {"startup_grace_seconds": 0, "summary_at": "08:00"}
    cfg = backup_config(state_dir, db_url, jobs=jobs, backup=backup)
    clock = ManualClock(local(4, 6, 12))
    rt = runtime(cfg, clock)
    monitor, summary = periodic_jobs(rt)
    monitor.run_due(rt)
    clock.set(local(4, 7, 1))
    ingest(rt, report("veeam-m365-failure.eml"))
    clock.set(local(4, 7, 2))
    assert ingest(rt, report("wsb-success.eml")).outcome == "backup_ok"
    clock.set(local(4, 7, 7, 45))
    monitor.run_due(rt)
    assert summary.run_due(rt) == local(4, 7, 8)
    assert outbox(rt, "backup_summary") == []

    clock.set(local(4, 7, 8, 0))
    assert summary.run_due(rt) == local(4, 8, 8)
    [(row, mail)] = outbox(rt, "backup_summary")
    assert row.recipients == [OPERATORS]
    assert "1 riusciti" in mail["Subject"] and "2 da verificare" in mail["Subject"]
    lines = [line for line in mail.get_body(("plain",)).get_content().splitlines() if line]
    rows = lines[1:]
    assert rows[0].startswith("FALLITO") and "(401) Unauthorized" in rows[0]
    assert rows[1].startswith("NON RICEVUTO") and "Copia notturna NAS" in rows[1]
    assert rows[2].startswith("riuscito") and "Server comunale" in rows[2]
    numbers = [t.number for t in tickets(rt)]
    assert f"[{numbers[0]}]" in rows[0] and f"[{numbers[1]}]" in rows[1]

    summary.run_due(rt)
    MorningSummary().run_due(rt)  # another instance, or after a restart
    assert len(outbox(rt, "backup_summary")) == 1
    with rt.db.session() as s:
        assert [d.day.isoformat() for d in s.scalars(select(BackupSummary))] == ["2026-04-07"]
    rt.db.dispose()


def test_summary_is_off_unless_configured(state_dir, db_url):
    rt = runtime(backup_config(state_dir, db_url), ManualClock(local(4, 7, 9)))
    assert [type(j).__name__ for j in periodic_jobs(rt)] == ["MissingReportMonitor"]
    assert MorningSummary().run_due(rt) is None
    rt.db.dispose()


# -- maild backup status ----------------------------------------------------------------

TOML = """
[service]
address = "supporto@consorzio.example"
operators_address = "operatori@consorzio.example"
state_dir = "{state}"

[database]
url = "{db}"

[[ente]]
name = "Comune di Vaiano Cremasco"
domains = ["comune.vaiano-cremasco.cr.it"]
province = "CR"

[[backup_job]]
ente = "comune di vaiano cremasco"
name = "Backup Posta e OneDrive Comune"
product = "veeam"
schedule = "weekdays"
expected_by = "07:30"

[[backup_job]]
ente = "Comune di Vaiano Cremasco"
name = "Backup Gestionale Halley"
product = "iperius"
schedule = "0 22 * * *"
expected_by = "06:00"

[backup]
startup_grace_seconds = 0
"""


def test_status_command_lists_jobs_and_unknown_reports(state_dir, db_url, capsys):
    path = state_dir / "maild.toml"
    path.write_text(TOML.format(state=state_dir, db=db_url))
    cfg = load_config(path)
    rt = runtime(cfg, ManualClock(local(4, 2, 6)))
    ingest(rt, report("veeam-m365-failure.eml"))
    ingest(rt, report("veeam-vbr-failure.eml"))  # no such job
    [t] = tickets(rt)
    rt.db.dispose()
    capsys.readouterr()  # the ingestion's log lines

    assert main(["--config", str(path), "backup", "status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    m365, halley = data["jobs"]
    assert m365["ente"] == VAIANO and m365["job"] == M365
    assert m365["last_status"] == "failure" and m365["consecutive_failures"] == 1
    assert m365["last_report_at"] == local(4, 2, 6).isoformat()
    assert m365["open_incident"] == t.number
    due = datetime.fromisoformat(m365["next_expected"]).astimezone(ROME)
    assert due.weekday() < 5 and (due.hour, due.minute) == (7, 30)
    assert due > datetime.now(UTC)
    assert halley["last_report_at"] is None and halley["open_incident"] is None
    assert halley["consecutive_failures"] == 0
    assert datetime.fromisoformat(halley["next_expected"]).astimezone(ROME).hour == 6
    [unknown] = data["unknown"]
    assert unknown["job"] == "Backup Sicr@web" and unknown["last_status"] == "failure"

    assert main(["--config", str(path), "backup", "status"]) == 0
    text = capsys.readouterr().out
    assert M365 in text and t.number in text and "Backup Sicr@web" in text


@pytest.mark.parametrize("language", ["en"])
def test_english_notifications(state_dir, db_url, language):
    cfg = backup_config(state_dir, db_url, jobs=[WEEKDAYS_JOB], service={"language": language})
    clock = ManualClock(local(4, 2, 6))
    rt = runtime(cfg, clock)
    ingest(rt, report("veeam-m365-failure.eml"))
    clock.set(local(4, 3, 7, 31))
    MissingReportMonitor(rt, NO_GRACE).run_due(rt)
    ingest(rt, report("veeam-m365-success.eml"))
    ingest(rt, report("veeam-vbr-failure.eml"))
    subjects = [m["Subject"] for _, m in outbox(rt)]
    assert "New incident" in subjects[0] and "Backup failed" in subjects[0]
    assert "backup report not received" in subjects[1]
    assert "Backup back to normal" in subjects[2]
    assert "unconfigured job" in subjects[3]
    rt.db.dispose()
