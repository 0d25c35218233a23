"""The command line as an admin and an MTA use it: deliver, ticket list/show, run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, SHARED
from .mails import make_mail

MAILD = [sys.executable, "-m", "maild.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def config_file(tmp_path: Path, db_url: str | None = None) -> Path:
    state = tmp_path / "state"
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "maild.toml"
    path.write_text(
        f"""
[service]
name = "Supporto Consorzio"
address = "supporto@consorzio.example"
operators_address = "operatori@consorzio.example"
state_dir = "{state}"

[database]
url = "{db_url or f"sqlite:///{state / 'maild.db'}"}"

[[mailbox]]
name = "supporto"
type = "maildir"
path = "{tmp_path / "inbox"}"
poll_interval = 0.2

[smtp]
transport = "maildir"
path = "{tmp_path / "outbox"}"

[[ente]]
name = "Comune di Vaiano Cremasco"
domains = ["comune.vaiano-cremasco.cr.it"]
profile = "PRO"
province = "CR"
"""
    )
    return path


def run(args: list[str], stdin: bytes = b"", cwd: Path = ROOT, env=None):
    return subprocess.run(
        [*MAILD, *args], input=stdin, capture_output=True, cwd=cwd, env=env or ENV, timeout=60
    )


def test_deliver_stores_once_and_ticket_json(tmp_path):
    cfg = config_file(tmp_path)
    raw = (SHARED / "samples/italian-mail/a01-outlook2016-new-windows1252.eml").read_bytes()
    first = run(["--config", str(cfg), "deliver"], raw)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert out["outcome"] == "new_ticket" and out["ticket"].endswith("-000001")
    again = run(["--config", str(cfg), "deliver"], raw)
    assert again.returncode == 0 and json.loads(again.stdout)["duplicate"] is True

    listed = run(["--config", str(cfg), "ticket", "list", "--json"])
    [ticket] = json.loads(listed.stdout)
    assert set(ticket) >= {
        "number",
        "subject",
        "status",
        "priority",
        "ente",
        "requester",
        "assignee",
        "created_at",
        "taken_at",
        "sla_due_at",
    }
    assert ticket["subject"] == "Stampante di rete Anagrafe non stampa"
    assert ticket["status"] == "nuovo" and ticket["priority"] in ("ALTA", "MEDIA", "BASSA")
    assert ticket["ente"] == "Comune di Vaiano Cremasco"
    assert ticket["sla_due_at"] is not None

    shown = run(["--config", str(cfg), "ticket", "show", ticket["number"], "--json"])
    data = json.loads(shown.stdout)
    [article] = data["articles"]
    assert set(article) >= {
        "direction",
        "sender",
        "recipients",
        "date",
        "message_id",
        "body_text",
        "attachments",
    }
    assert "I documenti restano in coda con lo stato" in article["body_text"]
    text = run(["--config", str(cfg), "ticket", "show", ticket["number"]])
    assert "Stampante di rete" in text.stdout.decode()
    missing = run(["--config", str(cfg), "ticket", "show", "2026-999999"])
    assert missing.returncode == 1


def test_deliver_exit_codes(tmp_path):
    cfg = config_file(tmp_path)
    assert run(["--config", str(cfg), "deliver"], b"").returncode == 65
    assert run(["--config", str(cfg), "deliver"], b"\x00\x01garbage\xff" * 20).returncode == 65
    # the database cannot be reached: the MTA must keep the message and retry
    down = config_file(tmp_path / "down", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    res = run(["--config", str(down), "deliver"], make_mail())
    assert res.returncode == 75, res.stderr
    # a broken configuration is also temporary for the MTA
    broken = tmp_path / "broken.toml"
    broken.write_text("[service\n")
    assert run(["--config", str(broken), "deliver"], make_mail()).returncode == 75


def _wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_embedded_default_runs_without_a_mail_server(tmp_path):
    """README's first command: `maild run` with no configuration, Maildirs under ./var."""
    env = {k: v for k, v in ENV.items() if k != "MAILD_CONFIG"}
    proc = subprocess.Popen([*MAILD, "run"], cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    try:
        inbox = tmp_path / "var" / "inbox" / "new"
        _wait_for(inbox.is_dir)
        (inbox / "sample.eml").write_bytes(
            (
                SHARED / "samples/italian-mail/a25-outlook2016-new-plaintext-iso88591.eml"
            ).read_bytes()
        )
        outbox = tmp_path / "var" / "outbox" / "new"
        _wait_for(lambda: outbox.is_dir() and len(list(outbox.iterdir())) >= 2)
        mails = [p.read_bytes() for p in outbox.iterdir()]
        assert any(b"[Ticket#" in m and b"X-Maild-Kind: ack" in m for m in mails)
        _wait_for(lambda: not list(inbox.iterdir()))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=12) == 0
    listed = subprocess.run(
        [*MAILD, "ticket", "list", "--json"], cwd=tmp_path, env=env, capture_output=True
    )
    [ticket] = json.loads(listed.stdout)
    assert ticket["subject"] == "Firma digitale: PIN bloccato dopo tre tentativi"


def test_sd_notify_ready_watchdog_stopping_and_reload(tmp_path):
    cfg = config_file(tmp_path)
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(20)
    env = {**ENV, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}
    proc = subprocess.Popen([*MAILD, "--config", str(cfg), "run"], env=env, stderr=subprocess.PIPE)
    env["WATCHDOG_PID"] = str(proc.pid)
    seen: list[str] = []

    def until(word: str) -> None:
        while not any(word in s for s in seen):
            seen.append(sock.recv(4096).decode())

    try:
        until("READY=1")
        until("WATCHDOG=1")
        # SIGHUP with a broken file keeps the old configuration running
        cfg.write_text(cfg.read_text().replace('profile = "PRO"', 'profile = "GOLD"'))
        proc.send_signal(signal.SIGHUP)
        until("STATUS=configuration rejected")
        # and with a valid one reloads
        cfg.write_text(cfg.read_text().replace('profile = "GOLD"', 'profile = "BASIC"'))
        proc.send_signal(signal.SIGHUP)
        until("RELOADING=1")
        until("READY=1\nSTATUS")  # ready again after the reload
        proc.send_signal(signal.SIGUSR1)  # what is every task waiting for?
        proc.send_signal(signal.SIGTERM)
        until("STOPPING=1")
        assert proc.wait(timeout=12) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    err = proc.stderr.read().decode()
    assert "reload_rejected" in err and "GOLD" in err
    assert "reloading_configuration" in err
    waits = [json.loads(line) for line in err.splitlines() if '"task_waiting"' in line]
    assert waits and all(w["frames"] for w in waits)
    assert any(w["frames"][0].startswith("daemon.py") for w in waits), waits


@pytest.mark.parametrize("command", [["db", "upgrade"], ["check-config"]])
def test_admin_commands(tmp_path, command):
    cfg = config_file(tmp_path)
    res = run(["--config", str(cfg), *command])
    assert res.returncode == 0, res.stderr


def _broken_templates(tmp_path: Path) -> Path:
    """The shipped templates with the operators' copy broken (an admin's typo)."""
    custom = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", custom)
    (custom / "it" / "operator_copy.html.j2").write_text("{% if ticket %}never closed\n")
    return custom


def test_check_config_names_a_broken_template(tmp_path):
    cfg = config_file(tmp_path)
    custom = _broken_templates(tmp_path)
    cfg.write_text(
        cfg.read_text().replace("[service]\n", f'[service]\ntemplates_dir = "{custom}"\n', 1)
    )
    res = run(["--config", str(cfg), "check-config"])
    assert res.returncode == 78
    assert b"operator_copy.html.j2: TemplateSyntaxError line" in res.stderr
