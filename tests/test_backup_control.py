"""Backup control through the ingestion pipeline: reports become history or incidents.

Real samples from ../shared/samples/backup-reports go through `Ingestor.ingest` exactly as
the daemon drives it, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from maild.backup.models import BackupJobState, BackupRun, BackupUnknownJob
from maild.clock import ManualClock
from maild.config import ConfigError
from maild.db import Database
from maild.ingest import PROCESSED, InboundItem, Ingestor, Runtime
from maild.models import Article, OutboxMessage, Ticket

from .conftest import SHARED, make_config
from .mails import make_mail

SAMPLES = SHARED / "samples" / "backup-reports"
T0 = datetime(2026, 3, 10, 5, 0, tzinfo=UTC)  # Tuesday 06:00 in Rome
VAIANO = "Comune di Vaiano Cremasco"
M365 = "Backup Posta e OneDrive Comune"
OPERATORS = "operatori@consorzio.example"

JOBS = [
    {
        "ente": VAIANO,
        "name": M365.upper(),  # job names compare case-insensitively
        "product": "veeam",
        "schedule": "daily",
        "expected_by": "07:30",
    },
    {
        "ente": "Comune di Bagnolo Cremasco",
        "name": "Server comunale",
        "product": "wsb",
        "host": "srv-comune01",
        "sender": "srv-comune01@comune.vaiano-cremasco.cr.it",
        "schedule": "weekdays",
        "expected_by": "08:00",
    },
]


# -- helpers shared by the backup-control tests ------------------------------------------


def report(name: str, n: int = 0) -> bytes:
    """A sample report; n > 0 gives another run of it (a new Message-ID)."""
    raw = (SAMPLES / name).read_bytes()
    if n:
        raw = re.sub(rb"(?im)^Message-ID:\s*<", b"Message-ID: <run%d." % n, raw, count=1)
    return raw


def backup_config(state_dir, db_url, jobs=JOBS, **overrides):
    overrides.setdefault("backup", {"startup_grace_seconds": 0})
    return make_config(state_dir, db_url=db_url, backup_job=jobs, **overrides)


def runtime(cfg, clock) -> Runtime:
    db = Database(cfg.database_url)
    db.upgrade()
    return Runtime.create(cfg, db=db, clock=clock)


def ingest(rt: Runtime, raw: bytes, mailbox: str = "supporto"):
    return Ingestor(rt).ingest(InboundItem(raw, mailbox))


def outbox(
    rt: Runtime, kind: str | None = None
) -> list[tuple[OutboxMessage, email.message.Message]]:
    with rt.db.session() as s:
        q = select(OutboxMessage).order_by(OutboxMessage.id)
        if kind:
            q = q.where(OutboxMessage.kind == kind)
        rows = list(s.scalars(q))
    return [
        (r, email.message_from_bytes(rt.notifier.wire(r), policy=email.policy.default))
        for r in rows
    ]


def tickets(rt: Runtime) -> list[Ticket]:
    with rt.db.session() as s:
        return list(s.scalars(select(Ticket).order_by(Ticket.id)))


def articles(rt: Runtime, number: str) -> list[Article]:
    with rt.db.session() as s:
        t = s.scalar(select(Ticket).where(Ticket.number == number))
        q = select(Article).where(Article.ticket_id == t.id).order_by(Article.id)
        return list(s.scalars(q.options(selectinload(Article.attachments))))


def state(rt: Runtime, cfg, index: int = 0) -> BackupJobState:
    with rt.db.session() as s:
        return s.get(BackupJobState, cfg.backup_job[index].key)


@pytest.fixture
def clock():
    return ManualClock(T0)


@pytest.fixture
def rt(state_dir, db_url, clock):
    runtime_ = runtime(backup_config(state_dir, db_url), clock)
    yield runtime_
    runtime_.db.dispose()


# -- behaviour --------------------------------------------------------------------------


def test_failure_opens_incident_second_failure_joins_it_success_resolves(rt, clock):
    # 1. a failure: incident for the ente, summary in the body, original attached
    res = ingest(rt, report("veeam-m365-failure.eml"))
    assert res.outcome == "backup_incident" and res.folder == PROCESSED
    [t] = tickets(rt)
    assert res.ticket_number == t.number
    assert t.kind == "incidente" and t.ente == VAIANO and t.priority == "ALTA"
    assert t.status == "nuovo" and t.sla_due_at is not None and t.sla_due_at > clock.now()
    assert t.title == f"Backup fallito: {M365.upper()} (1 fallimento consecutivo)"
    [a] = articles(rt, t.number)
    assert "(401) Unauthorized" in a.body_text and "Fallimenti consecutivi: 1" in a.body_text
    original = next(x for x in a.attachments if x.filename == "report-originale.eml")
    assert rt.blobs.get(original.sha256) == report("veeam-m365-failure.eml")
    assert a.raw_sha256 == original.sha256

    [(row, mail)] = outbox(rt)  # the operators only: nothing to the backup software
    assert row.kind == "backup_incident" and row.recipients == [OPERATORS]
    assert mail["Subject"].startswith(f"[Ticket#{t.number}] Nuovo incidente")
    assert "(401) Unauthorized" in mail.get_body(("plain",)).get_content()
    assert [p.get_filename() for p in mail.iter_attachments()] == ["report-originale.eml"]

    # 2. a warning next night: the same incident, the count in title and body
    clock.advance(days=1)
    res = ingest(rt, report("veeam-m365-warning.eml"))
    assert res.outcome == "backup_incident_updated" and res.ticket_number == t.number
    [t] = tickets(rt)
    assert t.title.endswith("(2 fallimenti consecutivi)") and t.priority == "ALTA"
    second = articles(rt, t.number)[-1]
    assert "Fallimenti consecutivi: 2" in second.body_text
    assert "exceeds the maximum size" in second.body_text
    # 3. and a failure again (another run of the same report)
    clock.advance(days=1)
    assert ingest(rt, report("veeam-m365-failure.eml", 1)).ticket_number == t.number
    assert tickets(rt)[0].title.endswith("(3 fallimenti consecutivi)")
    assert state(rt, rt.cfg).consecutive_failures == 3
    assert len(outbox(rt, "backup_incident")) == 3

    # 4. success: a note, the incident resolved, operators told; no ticket for it
    clock.advance(days=1)
    res = ingest(rt, report("veeam-m365-success.eml"))
    assert res.outcome == "backup_recovered" and res.ticket_number == t.number
    [t] = tickets(rt)
    assert t.status == "risolto" and t.resolved_at == clock.now()
    note = articles(rt, t.number)[-1]
    assert "dopo 3 fallimenti consecutivi" in note.body_text and "risolto" in note.body_text
    [(row, mail)] = outbox(rt, "backup_resolved")
    assert row.recipients == [OPERATORS] and t.number in mail["Subject"]
    st = state(rt, rt.cfg)
    assert st.consecutive_failures == 0 and st.open_ticket_id is None
    assert st.last_status == "success" and st.last_report_at == clock.now()

    # 5. a later failure opens a new incident
    clock.advance(days=1)
    res = ingest(rt, report("veeam-m365-failure.eml", 2))
    assert res.outcome == "backup_incident" and res.ticket_number != t.number
    assert len(tickets(rt)) == 2
    assert all(r.recipients == [OPERATORS] for r, _ in outbox(rt))
    with rt.db.session() as s:
        runs = s.scalars(select(BackupRun.status).order_by(BackupRun.id)).all()
    assert runs == ["failure", "warning", "failure", "success", "failure"]


def test_success_without_incident_is_history_only(rt):
    res = ingest(rt, report("veeam-m365-success.eml"))
    assert res.outcome == "backup_ok" and res.ticket_number is None
    assert res.folder == PROCESSED
    assert tickets(rt) == [] and outbox(rt) == []
    with rt.db.session() as s:
        [run] = s.scalars(select(BackupRun)).all()
    assert run.job_key == rt.cfg.backup_job[0].key and run.status == "success"
    assert run.started_at == datetime(2025, 3, 10, 19, 0, 2, tzinfo=UTC)  # 20:00:02 in Rome
    assert run.size == "Transferred 1.8 GB"


def test_warning_is_medium_and_a_later_failure_raises_it(rt, clock):
    ingest(rt, report("veeam-m365-warning.eml"))
    [t] = tickets(rt)
    assert t.priority == "MEDIA" and t.title.startswith("Backup con avvisi:")
    clock.advance(hours=20)
    ingest(rt, report("veeam-m365-failure.eml"))
    [t] = tickets(rt)
    assert t.priority == "ALTA" and t.title.startswith("Backup fallito:")


def test_success_can_leave_the_incident_open(state_dir, db_url, clock):
    cfg = backup_config(
        state_dir, db_url, backup={"startup_grace_seconds": 0, "resolve_on_success": False}
    )
    rt = runtime(cfg, clock)
    ingest(rt, report("veeam-m365-failure.eml"))
    res = ingest(rt, report("veeam-m365-success.eml"))
    assert res.outcome == "backup_recovered"
    [t] = tickets(rt)
    assert t.status == "nuovo"
    assert "resta aperto" in articles(rt, t.number)[-1].body_text
    assert len(outbox(rt, "backup_resolved")) == 1
    rt.db.dispose()


def test_priorities_come_from_configuration(state_dir, db_url, clock):
    jobs = [{**JOBS[0], "priority_warning": "BASSA"}]
    cfg = backup_config(state_dir, db_url, jobs=jobs)
    rt = runtime(cfg, clock)
    ingest(rt, report("veeam-m365-warning.eml"))
    assert tickets(rt)[0].priority == "BASSA"
    rt.db.dispose()


def test_host_matches_when_the_product_has_no_job_name(rt):
    res = ingest(rt, report("wsb-failure.eml"))
    assert res.outcome == "backup_incident"
    [t] = tickets(rt)
    assert t.ente == "Comune di Bagnolo Cremasco" and t.title.startswith("Backup fallito: Server")
    assert "not enough disk space" in articles(rt, t.number)[0].body_text


def test_forwarded_report_still_matches_its_configured_sender(rt):
    """A comune forwards the WSB mail as an attachment: the original sender counts."""
    outer = MIMEMultipart()
    outer["From"] = "Marta Rossi <m.rossi@comune.vaiano-cremasco.cr.it>"
    outer["To"] = "supporto@consorzio.example"
    outer["Subject"] = "I: Failed Backup on SRV-COMUNE01"
    outer["Message-ID"] = "<fwd-wsb@comune.example>"
    outer.attach(MIMEText("Vi inoltro il report di stanotte.\n", "plain", "utf-8"))
    outer.attach(MIMEMessage(email.message_from_bytes(report("wsb-failure.eml"))))
    res = ingest(rt, outer.as_bytes())
    assert res.outcome == "backup_incident"
    assert outbox(rt, "ack") == []


def test_wrong_sender_makes_the_report_unknown(state_dir, db_url, clock):
    jobs = [{**JOBS[0], "sender": "veeam@comune.vaiano-cremasco.cr.it"}]
    rt = runtime(backup_config(state_dir, db_url, jobs=jobs), clock)
    assert ingest(rt, report("veeam-m365-failure.eml")).outcome == "backup_unknown_job"
    assert tickets(rt) == []
    rt.db.dispose()


def test_human_mail_about_backups_is_an_ordinary_ticket(rt):
    raw = make_mail(
        subject="Backup di ieri",
        body="Buongiorno, il backup di ieri e' andato? Veeam ci ha mandato una mail strana.\n",
    )
    res = ingest(rt, raw)
    assert res.outcome == "new_ticket"
    [t] = tickets(rt)
    assert t.kind == "richiesta"
    assert len(outbox(rt, "ack")) == 1
    with rt.db.session() as s:
        assert s.scalars(select(BackupRun)).all() == []


def test_unknown_job_is_recorded_and_told_once(rt, clock):
    res = ingest(rt, report("veeam-vbr-failure.eml"))  # "Backup Sicr@web": not configured
    assert res.outcome == "backup_unknown_job" and res.ticket_number is None
    assert res.folder == PROCESSED
    [(row, mail)] = outbox(rt)
    assert row.kind == "backup_unknown" and row.recipients == [OPERATORS]
    assert "Backup Sicr@web" in mail["Subject"]
    clock.advance(days=1)
    assert ingest(rt, report("veeam-vbr-failure.eml", 1)).outcome == "backup_unknown_job"
    assert len(outbox(rt)) == 1  # told once per job name
    ingest(rt, report("iperius-failure-it.eml"))  # another unknown job: told too
    assert len(outbox(rt, "backup_unknown")) == 2
    assert tickets(rt) == []
    with rt.db.session() as s:
        unknown = s.scalars(select(BackupUnknownJob).order_by(BackupUnknownJob.id)).all()
        runs = s.scalars(select(BackupRun)).all()
    assert [(u.job_name, u.reports) for u in unknown] == [
        ("Backup Sicr@web", 2),
        ("Backup Sicr@web DB", 1),
    ]
    assert len(runs) == 3 and all(r.job_key is None for r in runs)


def test_report_at_a_second_mailbox(rt):
    res = ingest(rt, report("veeam-m365-failure.eml"), mailbox="backup")
    assert res.outcome == "backup_incident"


def test_same_report_twice_is_counted_once(rt):
    ingest(rt, report("veeam-m365-failure.eml"))
    again = ingest(rt, b"Received: from mx\r\n" + report("veeam-m365-failure.eml"))
    assert again.duplicate
    assert state(rt, rt.cfg).consecutive_failures == 1


# -- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ({"ente": "Comune di Nessuno"}, "not a configured [[ente]]"),
        ({"product": "arcserve"}, "unknown product 'arcserve'"),
        ({"schedule": "ogni tanto"}, "neither daily, weekdays nor a cron expression"),
        ({"expected_by": "25:00"}, "expected_by"),
        ({"product": "wsb"}, "give `host`"),
    ],
)
def test_configuration_errors_name_the_job(state_dir, job, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config(state_dir, backup_job=[{**JOBS[0], **job}])


def test_generic_rule_products_are_known(state_dir, db_url, clock):
    rule = {
        "name": "pg-dump",
        "product": "script",
        "subject": r"Backup database (?P<job>\S+)",
        "success": "^RESULT: OK$",
        "failure": "^RESULT: FAILED",
        "error": "^ERROR: (?P<error>.+)$",
    }
    jobs = [
        {"ente": VAIANO, "name": "tributi", "product": "script", "expected_by": "07:00"},
        {"ente": VAIANO, "name": "protocollo", "product": "generic"},
    ]
    cfg = backup_config(state_dir, db_url, jobs=jobs, backup_rule=[rule])
    rt = runtime(cfg, clock)
    raw = make_mail(
        sender="root@srv-db.comune.vaiano-cremasco.cr.it",
        subject="Backup database TRIBUTI",
        body="RESULT: FAILED\nERROR: disk full\n",
    )
    assert ingest(rt, raw).outcome == "backup_incident"
    raw = make_mail(
        sender="root@srv-db.comune.vaiano-cremasco.cr.it",
        subject="Backup database protocollo",
        body="RESULT: OK\n",
    )
    assert ingest(rt, raw).outcome == "backup_ok"
    assert "disk full" in articles(rt, tickets(rt)[0].number)[0].body_text
    rt.db.dispose()
    with pytest.raises(ConfigError, match="invalid failure regex"):
        make_config(state_dir, backup_rule=[{**rule, "failure": "(unclosed"}])


def test_report_times_are_kept_as_aware_datetimes(rt, clock):
    clock.advance(timedelta(minutes=5))
    ingest(rt, report("veeam-m365-failure.eml"))
    with rt.db.session() as s:
        [run] = s.scalars(select(BackupRun)).all()
    assert run.received_at == clock.now()
    assert run.ended_at == datetime(2025, 3, 12, 19, 0, 41, tzinfo=UTC)
