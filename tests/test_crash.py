"""Crash test: SIGKILL the real daemon at random moments while it ingests from Dovecot,
on SQLite and on PostgreSQL.

At the end: exactly one ticket per new message, every follow-up on its ticket, exactly one
acknowledgement per ticket (at most one extra per kill), every message in the processed
folder, and a clean SIGTERM stop within 10 s.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from .conftest import IMAP_PASS, ROOT
from .mails import make_mail

N_NEW, N_FOLLOW, KILLS = 160, 40, 5
DOMAINS = ["comune.vaiano-cremasco.cr.it", "comune.bagnolo-cremasco.cr.it", "comune.crema.example"]


def write_config(state_dir: Path, imap_port: int, smtp_port: int, db_url: str) -> Path:
    (state_dir / "imap.secret").write_text(IMAP_PASS)
    path = state_dir / "maild.toml"
    path.write_text(
        f"""
[service]
name = "Supporto Consorzio"
address = "supporto@consorzio.example"
operators_address = "operatori@consorzio.example"
state_dir = "{state_dir}"
ack_rate_limit = 1000

[database]
url = "{db_url}"

[logging]
format = "json"
level = "warning"

[[mailbox]]
name = "supporto"
type = "imap"
host = "127.0.0.1"
port = {imap_port}
security = "none"
username = "supporto"
password_file = "{state_dir / "imap.secret"}"
poll_interval = 1
fetch_batch = 50

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
retry_base = 0.2
retry_max = 1

[[ente]]
name = "Comune di Vaiano Cremasco"
domains = ["comune.vaiano-cremasco.cr.it"]
profile = "PRO"
province = "CR"
"""
    )
    return path


def build_mails(rng: random.Random) -> tuple[list[bytes], dict[str, str]]:
    """New requests first, then follow-ups to some of them (In-Reply-To their request)."""
    mails, follow_of = [], {}
    for i in range(N_NEW):
        sender = f"utente{i}@{DOMAINS[i % len(DOMAINS)]}"
        mails.append(
            make_mail(
                sender=sender,
                subject=f"Richiesta {i}: PC non si avvia",
                message_id=f"<new.{i}@comune.example>",
                body=f"Richiesta numero {i}.\n"
                + "Testo della segnalazione.\n" * rng.randint(1, 40),
            )
        )
    for j, i in enumerate(rng.sample(range(N_NEW), N_FOLLOW)):
        mid = f"<follow.{j}@comune.example>"
        follow_of[mid] = f"<new.{i}@comune.example>"
        mails.append(
            make_mail(
                sender=f"utente{i}@{DOMAINS[i % len(DOMAINS)]}",
                subject=f"R: Richiesta {i}: PC non si avvia",
                message_id=mid,
                in_reply_to=f"<new.{i}@comune.example>",
                references=f"<new.{i}@comune.example>",
                body="Aggiungo: ora fa un suono strano.\n",
            )
        )
    return mails, follow_of


def count_rows(engine: Engine, table: str) -> int:
    if engine.dialect.name == "sqlite" and not Path(engine.url.database).exists():
        return 0  # not created yet (connecting would create an empty file)
    try:
        with engine.connect() as c:
            return c.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    except SQLAlchemyError:  # schema not created yet
        return 0


def _children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        out += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie is dead, only not reaped yet


def start(config: Path, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "maild.cli", "--config", str(config), "run"],
        cwd=ROOT,
        stdout=log,
        stderr=log,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(imap, smtp, state_dir, db_url):
    sink, smtp_port = smtp
    seed = int(os.environ.get("MAILD_CRASH_SEED", time.time_ns() % 10_000))
    rng = random.Random(seed)
    print(f"crash test seed {seed} (MAILD_CRASH_SEED to replay)")
    mails, follow_of = build_mails(rng)
    conn = imap.connect()
    for raw in mails:
        conn.append("INBOX", None, None, raw)
    conn.logout()
    config = write_config(state_dir, imap.port, smtp_port, db_url)
    db = create_engine(db_url, poolclass=NullPool)
    total = len(mails)
    # kill points: mostly while ingesting (by progress), some at a random time after start
    thresholds = sorted(rng.sample(range(5, total - 5), KILLS))
    log = open(state_dir / "daemon.log", "ab")
    kills = senders_seen = 0
    for k, threshold in enumerate(thresholds):
        proc = start(config, log)
        deadline = time.monotonic() + 60
        by_time = k % 2 == 1
        delay = rng.uniform(0.3, 1.5)
        t0 = time.monotonic()
        while time.monotonic() < deadline:
            if by_time and time.monotonic() - t0 >= delay:
                break
            if not by_time and count_rows(db, "inbound_messages") >= threshold:
                break
            if proc.poll() is not None:
                pytest.fail(f"daemon exited by itself with {proc.returncode}; see daemon.log")
            time.sleep(0.005)
        children = _children(proc.pid)  # the outbox sender process
        senders_seen += bool(children)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        # the sender dies with the daemon: none is left to race the next one's
        gone = time.monotonic() + 5
        while any(_alive(c) for c in children) and time.monotonic() < gone:
            time.sleep(0.01)
        assert not any(_alive(c) for c in children), f"sender outlived the daemon: {children}"
    assert kills == KILLS
    assert senders_seen  # some kills hit a daemon whose sender process was running

    # the last run goes to the end and is stopped with SIGTERM
    proc = start(config, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if count_rows(db, "inbound_messages") >= total and imap.count("INBOX") == 0:
            with db.connect() as c:
                pending = c.execute(
                    text("SELECT count(*) FROM outbox WHERE status != 'sent'")
                ).scalar_one()
            if pending == 0:
                break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("the daemon did not finish the mailbox in 120 s")
    t_stop = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert time.monotonic() - t_stop < 10
    log.close()

    with db.connect() as c:
        q = lambda sql: c.execute(text(sql)).all()  # noqa: E731
        tickets = dict(q("SELECT origin_message_id, id FROM tickets"))
        n_tickets = q("SELECT count(*) FROM tickets")[0][0]
        inbound = dict(q("SELECT message_id, ticket_id FROM inbound_messages"))
        outcomes = collections.Counter(r[0] for r in q("SELECT outcome FROM inbound_messages"))
        numbers = sorted(r[0] for r in q("SELECT seq FROM tickets"))
    db.dispose()
    # exactly one ticket per new message, numbered without gaps
    assert n_tickets == N_NEW == len(tickets)
    assert numbers == list(range(1, N_NEW + 1))
    assert outcomes == {"new_ticket": N_NEW, "follow_up": N_FOLLOW}
    # every follow-up on its ticket
    for follow, original in follow_of.items():
        assert inbound[follow] == tickets[original]
    # every message in the processed folder, none left behind
    assert imap.count("INBOX") == 0
    assert imap.count("maild/processed") == total
    # acknowledgements: one per ticket, at most one extra per kill
    acks = collections.Counter()
    for _, _, data in sink.messages:
        msg = message_from_bytes(data, policy=default_policy)
        if msg["X-Maild-Kind"] == "ack":
            acks[msg["X-Maild-Ticket"]] += 1
    assert len(acks) == N_NEW
    assert sum(acks.values()) <= N_NEW + KILLS, sum(acks.values())
