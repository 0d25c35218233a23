"""Shared fixtures: a private Dovecot, an aiosmtpd server, configurations, databases.

Real parts, not mocks: Dovecot is Debian's dovecot-imapd started on a loopback port (the
script in ../shared/bench), SMTP is aiosmtpd's Controller, the database is SQLite and,
where it answers on 127.0.0.1:5432, PostgreSQL (a private schema per test).
"""

from __future__ import annotations

import imaplib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from email.policy import default as default_policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from maild.clock import ManualClock
from maild.config import Config, config_from_dict
from maild.db import Database
from maild.ingest import Runtime

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
BENCH = SHARED / "bench"
PG_URL = os.environ.get("MAILD_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IMAP_PASS = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- Dovecot ---------------------------------------------------------------------------------


class Dovecot:
    def __init__(self, directory: Path, port: int) -> None:
        self.dir = directory
        self.port = port
        self.host = "127.0.0.1"

    def connect(self, user: str = "supporto") -> imaplib.IMAP4:
        c = imaplib.IMAP4(self.host, self.port)
        c.login(user, IMAP_PASS)
        return c

    def append(self, raw: bytes, user: str = "supporto", folder: str = "INBOX") -> None:
        c = self.connect(user)
        try:
            typ, data = c.append(folder, None, None, raw)
            assert typ == "OK", data
        finally:
            c.logout()

    def folders(self, user: str = "supporto") -> list[str]:
        c = self.connect(user)
        try:
            _, data = c.list()
            return [line.decode().rsplit(' "/" ', 1)[1].strip('"') for line in data]
        finally:
            c.logout()

    def count(self, folder: str, user: str = "supporto") -> int:
        c = self.connect(user)
        try:
            typ, data = c.select(f'"{folder}"', readonly=True)
            return int(data[0]) if typ == "OK" else 0
        finally:
            c.logout()

    def messages(self, folder: str, user: str = "supporto") -> list[bytes]:
        c = self.connect(user)
        try:
            typ, _ = c.select(f'"{folder}"', readonly=True)
            if typ != "OK":
                return []
            _, data = c.uid("search", None, "ALL")
            uids = data[0].split()
            out = []
            for uid in uids:
                _, d = c.uid("fetch", uid, "(BODY.PEEK[])")
                out.append(d[0][1])
            return out
        finally:
            c.logout()

    def reset(self) -> None:
        """Empty every folder of every user (between tests)."""
        for user in ("supporto", "operator1", "backup"):
            c = self.connect(user)
            try:
                _, data = c.list()
                for line in data or []:
                    name = line.decode().rsplit(' "/" ', 1)[1].strip('"')
                    if "\\Noselect" in line.decode():
                        continue
                    typ, data = c.select(f'"{name}"')
                    if typ == "OK" and int(data[0]) > 0:
                        c.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
                        c.expunge()
                    if typ == "OK":
                        c.close()
                    if name != "INBOX":
                        c.delete(f'"{name}"')
            finally:
                c.logout()


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    if not Path("/usr/sbin/dovecot").exists():
        pytest.fail("Dovecot is not installed: apt-get install dovecot-imapd (see .ci/run)")
    # not under pytest's 0700 tmp: Dovecot's unprivileged auth and mail users must reach it
    directory = Path(tempfile.mkdtemp(prefix="maild-dovecot-"))
    directory.chmod(0o755)
    port = free_port()
    # output to a file, not a pipe: the daemonised Dovecot would hold a pipe open forever
    with open(directory / "up.log", "wb") as out:
        subprocess.run(
            ["bash", str(BENCH / "dovecot-up.sh"), str(directory), str(port)],
            check=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "BENCH_PASS": IMAP_PASS, "MAIL_FSYNC": "never"},
        )
    server = Dovecot(directory, port)
    try:
        for _ in range(100):  # the master is up; wait until the listener answers
            try:
                server.connect().logout()
                break
            except OSError:
                threading.Event().wait(0.05)
        yield server
    finally:
        subprocess.run(
            ["bash", str(BENCH / "dovecot-down.sh"), str(directory)],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def imap(dovecot: Dovecot) -> Iterator[Dovecot]:
    dovecot.reset()
    yield dovecot


# -- SMTP ------------------------------------------------------------------------------------


class SmtpSink:
    """aiosmtpd handler that keeps every message and lets tests wait for a count."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.cond = threading.Condition()
        self.refuse: int | None = None  # a reply code to refuse with, for outage tests

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.refuse is not None:
            return f"{self.refuse} refused by test"
        with self.cond:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            self.cond.notify_all()
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Message]:
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.messages) >= count, timeout)
            if not ok:
                raise AssertionError(f"expected {count} mails, got {len(self.messages)}")
            return self.parsed()

    def parsed(self) -> list[Message]:
        return [message_from_bytes(m[2], policy=default_policy) for m in self.messages]

    def to(self, address: str) -> list[Message]:
        return [
            message_from_bytes(data, policy=default_policy)
            for _, rcpts, data in self.messages
            if address in rcpts
        ]


@pytest.fixture
def smtp() -> Iterator[tuple[SmtpSink, int]]:
    sink = SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


# -- databases -------------------------------------------------------------------------------


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(
            "host=127.0.0.1 port=5432 dbname=test user=postgres", connect_timeout=2
        ):
            return True
    except Exception:
        return False


PG_AVAILABLE = _pg_available()
DB_PARAMS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


PG_DSN = "host=127.0.0.1 port=5432 dbname=test user=postgres"


@contextmanager
def pg_schema_url() -> Iterator[str]:
    """A database URL on a private, throw-away PostgreSQL schema. Without PostgreSQL the
    test is skipped on a developer's machine and fails on CI, where it must run."""
    if not PG_AVAILABLE:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable at 127.0.0.1:5432 on CI")
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432")
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=DB_PARAMS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'maild.db'}"
        return
    with pg_schema_url() as url:
        yield url


# -- configurations --------------------------------------------------------------------------

OPERATORS = [
    {"name": "Mario Rossi", "email": "mario.rossi@consorzio.example", "role": "operator"},
    {"name": "Laura Bianchi", "email": "laura.bianchi@consorzio.example", "role": "coordinator"},
]
ENTI = [
    {
        "name": "Comune di Vaiano Cremasco",
        "domains": ["comune.vaiano-cremasco.cr.it"],
        "profile": "PRO",
        "province": "CR",
        "referent": "ced@comune.vaiano-cremasco.cr.it",
    },
    {
        "name": "Comune di Bagnolo Cremasco",
        "domains": ["comune.bagnolo-cremasco.cr.it"],
        "profile": "MINIMAL",
        "province": "CR",
    },
]


def make_config(
    state_dir: Path,
    *,
    db_url: str | None = None,
    imap: Dovecot | None = None,
    smtp_port: int | None = None,
    **overrides,
) -> Config:
    data: dict = {
        "service": {
            "name": "Supporto Consorzio",
            "address": "supporto@consorzio.example",
            "operators_address": "operatori@consorzio.example",
            "state_dir": str(state_dir),
        },
        "database": {"url": db_url or f"sqlite:///{state_dir / 'maild.db'}"},
        "operator": OPERATORS,
        "ente": ENTI,
        "smtp": (
            {
                "transport": "smtp",
                "host": "127.0.0.1",
                "port": smtp_port,
                "security": "none",
                "retry_base": 0.2,
                "retry_max": 1,
            }
            if smtp_port
            else {"transport": "maildir", "path": str(state_dir / "outbox")}
        ),
        "mailbox": [],
    }
    if imap is not None:
        secret = state_dir / "imap.secret"
        state_dir.mkdir(parents=True, exist_ok=True)
        secret.write_text(IMAP_PASS)
        data["mailbox"] = [
            {
                "name": "supporto",
                "type": "imap",
                "host": imap.host,
                "port": imap.port,
                "security": "none",
                "username": "supporto",
                "password_file": str(secret),
                "poll_interval": 1,
            }
        ]
    for section, values in overrides.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    return config_from_dict(data, Path("<test>"))


T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)  # a Tuesday, 10:00 in Rome


@pytest.fixture
def rt(state_dir: Path, db_url: str) -> Iterator[Runtime]:
    """A runtime on a fresh database (each of DB_PARAMS), its clock stopped at T0."""
    cfg = make_config(state_dir, db_url=db_url)
    db = Database(cfg.database_url)
    db.upgrade()
    yield Runtime.create(cfg, db=db, clock=ManualClock(T0))
    db.dispose()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d


def sample(path: str) -> bytes:
    return (SHARED / path).read_bytes()


@pytest.fixture(autouse=True)
def _no_credentials_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
