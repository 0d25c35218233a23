#!/usr/bin/env python3
"""Ingestion benchmark: maild against a private Dovecot and an aiosmtpd server.

From ONE run it prints:
  1. the floor: raw `UID FETCH` of the whole INBOX in 250-UID chunks (aioimaplib) plus
     parsing each message with mail-parser, msgs/s;
  2. maild's ingestion rate: the real daemon (`maild run`, a subprocess) from its start
     until every message is recorded, every ticket committed and every outgoing mail
     accepted by the SMTP server, msgs/s (also from "IMAP connected", i.e. without the
     interpreter start-up and schema creation);
  3. their ratio;
  4. arrival-to-acknowledgement latency p50/p99 for messages appended one by one at a
     fixed rate while the daemon waits in IDLE (append time at the client, acceptance
     time at the SMTP server, matched by In-Reply-To).

Usage: python3 bench/bench_ingest.py [-n 1000] [--latency 120] [--rate 5] [--pg URL]
Everything runs under a temporary directory that is removed at the end; Dovecot is
stopped whatever happens. Needs Debian's dovecot-imapd.
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
BENCH = SHARED / "bench"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

from seed_mailbox import Appender, generate, internaldate  # noqa: E402

PASSWORD = "bench"
SERVICE = "supporto@assistenza-comuni.example"
OPERATORS = "operatori@assistenza-comuni.example"
DOMAINS = [
    "comune.vaiano-cremasco.cr.it",
    "comune.crema.cr.it",
    "comune.bagnolo-cremasco.cr.it",
    "comune.pandino.cr.it",
    "comune.soncino.cr.it",
    "comune.lodi.lo.it",
    "comune.treviglio.bg.it",
]
_IRT = re.compile(rb"^in-reply-to:[ \t]*(<[^>\r\n]*>)", re.I | re.M)
_MSGID = re.compile(rb"^message-id:[ \t]*(<[^>\r\n]*>)", re.I | re.M)
_AUTO = re.compile(rb"^(auto-submitted|in-reply-to):", re.I | re.M)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- servers -----------------------------------------------------------------------------


class Dovecot:
    def __init__(self, base: Path) -> None:
        self.dir = base / "dovecot"
        self.dir.mkdir()
        self.port = free_port()

    def up(self) -> None:
        with open(self.dir.parent / "dovecot-up.log", "wb") as out:
            subprocess.run(
                ["bash", str(BENCH / "dovecot-up.sh"), str(self.dir), str(self.port)],
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "BENCH_PASS": PASSWORD, "MAIL_FSYNC": "never"},
                timeout=30,
            )
        for _ in range(100):
            try:
                self.connect().logout()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("Dovecot did not answer")

    def cpu(self) -> float:
        """CPU seconds used so far by this Dovecot's processes (the master's tree)."""
        try:
            master = int((self.dir / "run" / "master.pid").read_text())
        except (OSError, ValueError):
            return 0.0
        return sum(_cpu_of(pid) for pid in _tree(master))

    def down(self) -> None:
        subprocess.run(
            ["bash", str(BENCH / "dovecot-down.sh"), str(self.dir)],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )

    def connect(self) -> imaplib.IMAP4:
        c = imaplib.IMAP4("127.0.0.1", self.port)
        c.login("supporto", PASSWORD)
        return c

    def count(self, folder: str) -> int:
        c = self.connect()
        try:
            typ, data = c.select(f'"{folder}"', readonly=True)
            return int(data[0]) if typ == "OK" else 0
        finally:
            c.logout()

    def seed(self, msgs: list[bytes]) -> None:
        app = Appender("127.0.0.1", self.port, "supporto", PASSWORD)
        try:
            app.append_all("INBOX", [(raw, internaldate(raw)) for raw in msgs])
        finally:
            app.close()


class Sink:
    """aiosmtpd handler: records the acceptance time of every mail."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.last = 0.0  # wall-clock time of the last mail accepted
        self.last_ack = 0.0  # ... and of the last acknowledgement
        self.ack_count = 0
        self.acks: dict[bytes, float] = {}  # In-Reply-To -> first acceptance (monotonic)

    async def handle_DATA(self, server, session, envelope) -> str:
        now, wall = time.monotonic(), time.time()
        head = envelope.content[: envelope.content.find(b"\r\n\r\n") + 2]
        m = _IRT.search(head)
        with self.lock:
            self.count += 1
            self.last = wall
            if b"X-Maild-Kind: ack" in head:
                self.ack_count += 1
                self.last_ack = wall
                if m:
                    self.acks.setdefault(m.group(1), now)
        return "250 OK"


# -- 1. the floor --------------------------------------------------------------------------


async def _floor(port: int, chunk: int) -> tuple[int, float, float]:
    import aioimaplib
    import mailparser

    t0 = time.perf_counter()
    c0 = time.process_time()
    client = aioimaplib.IMAP4("127.0.0.1", port, timeout=60)
    await client.wait_hello_from_server()
    await client.login("supporto", PASSWORD)
    await client.select("INBOX")
    resp = await client.uid_search("ALL", charset=None)
    uids = [int(x) for line in resp.lines[:-1] for x in line.split() if x.isdigit()]
    fetched = parsed = 0
    t_fetch = 0.0
    for i in range(0, len(uids), chunk):
        part = uids[i : i + chunk]
        f0 = time.perf_counter()
        r = await client.uid("fetch", f"{part[0]}:{part[-1]}", "(UID BODY.PEEK[])")
        t_fetch += time.perf_counter() - f0
        for line in r.lines:
            if isinstance(line, bytearray):
                fetched += 1
                mailparser.parse_from_bytes(bytes(line))
                parsed += 1
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    await client.logout()
    assert fetched == parsed == len(uids), (fetched, parsed, len(uids))
    return fetched, elapsed, t_fetch, cpu


# -- 2. the daemon ---------------------------------------------------------------------------


def write_config(base: Path, imap_port: int, smtp_port: int, db_url: str) -> Path:
    state = base / "state"
    state.mkdir(exist_ok=True)
    (base / "imap.secret").write_text(PASSWORD)
    enti = "".join(
        f'\n[[ente]]\nname = "Comune {d.split(".")[1]}"\ndomains = ["{d}"]\n'
        f'profile = "PRO"\nprovince = "CR"\n'
        for d in DOMAINS
    )
    cfg = f"""
[service]
name = "Assistenza Comuni (bench)"
address = "{SERVICE}"
operators_address = "{OPERATORS}"
state_dir = "{state}"

[database]
url = "{db_url}"

[[mailbox]]
name = "supporto"
type = "imap"
host = "127.0.0.1"
port = {imap_port}
security = "none"
username = "supporto"
password_file = "{base / "imap.secret"}"
idle = true
poll_interval = 60

[smtp]
transport = "smtp"
host = "127.0.0.1"
port = {smtp_port}
security = "none"
retry_base = 1
retry_max = 5

[logging]
level = "info"
format = "json"

[[operator]]
name = "Mario Rossi"
email = "mario.rossi@assistenza-comuni.example"
role = "coordinator"
{enti}"""
    path = base / "maild.toml"
    path.write_text(cfg)
    return path


class DbProbe:
    """Counts of recorded messages and unsent mail, read from maild's database."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            self.path = url.split("///", 1)[1]
            self.conn = None
        else:
            import psycopg

            dsn, _, query = url.replace("postgresql+psycopg://", "postgresql://").partition("?")
            self.conn = psycopg.connect(dsn + ("?" + query if query else ""), autocommit=True)

    def counts(self) -> tuple[int, int, int, int] | None:
        """(inbound messages, outbox rows, outbox rows not sent, acknowledgements queued)"""
        q = (
            "SELECT (SELECT count(*) FROM inbound_messages),"
            " (SELECT count(*) FROM outbox),"
            " (SELECT count(*) FROM outbox WHERE status <> 'sent'),"
            " (SELECT count(*) FROM outbox WHERE kind = 'ack')"
        )
        try:
            if self.conn is not None:
                return tuple(self.conn.execute(q).fetchone())
            if not os.path.exists(self.path):
                return None
            with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5) as c:
                return tuple(c.execute(q).fetchone())
        except Exception:
            return None  # schema not there yet


def private_schema(url: str, stack: ExitStack) -> str:
    """A fresh schema in the PostgreSQL database at `url`, dropped at the end."""
    import uuid

    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://").partition("?")[0]
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")

    stack.callback(drop)
    return f"{url.partition('?')[0]}?options=-csearch_path%3D{schema}"


class MaildProcess:
    def __init__(
        self, config: Path, base: Path, profile: str | None, spy: str | None = None
    ) -> None:
        self.log_path = base / "maild.log"
        cmd = [sys.executable]
        if profile:
            cmd += ["-m", "cProfile", "-o", profile]
        cmd += ["-m", "maild.cli", "--config", str(config), "run"]
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self.logf,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.spy = None
        if spy:  # py-spy samples both processes (pip install py-spy)
            self.spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--subprocesses",
                    "--gil",
                    "-r",
                    os.environ.get("SPY_RATE", "200"),
                    "-f",
                    "raw",
                ]
                + (["--nonblocking"] if os.environ.get("SPY_NONBLOCKING") else [])
                + ["-o", spy, "--pid", str(self.proc.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def cpu(self) -> dict[int, float]:
        """CPU seconds (user + system, all threads) used so far by maild (first) and its
        child processes (parser, sender)."""
        return {pid: _cpu_of(pid) for pid in _tree(self.proc.pid)}

    @staticmethod
    def role(pid: int) -> str:
        """main, parser or sender, from the process's command line."""
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return "?"
        for module, name in ((b"parse_process", "parser"), (b"sender_process", "sender")):
            if module in cmd:
                return name
        return "main"

    def events(self, event: str) -> list[float]:
        """Wall-clock times (from maild's own log timestamps) of every `event`."""
        from datetime import datetime

        out = []
        for line in self.log_path.read_bytes().splitlines():
            if f'"event": "{event}"'.encode() not in line:
                continue
            rec = json.loads(line)
            out.append(datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00")).timestamp())
        return out

    def wait_log(self, event: str, timeout: float) -> float:
        """Monotonic time at which `event` was first seen in the log (polled)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"maild exited with {self.proc.returncode}; see {self.log_path}")
            if f'"event": "{event}"'.encode() in self.log_path.read_bytes():
                return time.monotonic()
            time.sleep(0.01)
        raise TimeoutError(f"no {event} in {timeout}s")

    def errors(self) -> list[str]:
        out = []
        for line in self.log_path.read_bytes().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                out.append(line.decode(errors="replace"))
                continue
            if rec.get("level") in ("error", "critical") or rec.get("event") in (
                "message_quarantined",
                "imap_error",
                "outbox_send_failed",
            ):
                out.append(line.decode(errors="replace")[:300])
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.logf.close()
        if self.spy is not None:
            self.spy.wait(60)


def _cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                todo += [
                    int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()
                ]
        except OSError:
            pass
    return out


def wait_ingested(
    probe: DbProbe,
    sink: Sink,
    n: int,
    proc: MaildProcess,
    timeout: float,
    trail: list,
    dove_cpu=lambda: 0.0,
):
    """Until every message is recorded and every mail, acknowledgements first, accepted.
    `trail` gets (acks accepted so far, maild's CPU by pid, this process's CPU) each poll."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sink.lock:
            acked = sink.ack_count
        trail.append((acked, proc.cpu(), time.process_time(), dove_cpu()))
        if proc.proc.poll() is not None:
            raise RuntimeError(f"maild exited with {proc.proc.returncode}; see {proc.log_path}")
        c = probe.counts()
        if c is not None:
            inbound, outbox, unsent, acks = c
            with sink.lock:
                received = sink.count
            if inbound >= n and unsent == 0 and received >= outbox:
                with sink.lock:
                    assert sink.ack_count >= acks, (sink.ack_count, acks)
                    return c, sink.last_ack, sink.last
        time.sleep(0.05)
    raise TimeoutError(f"not done in {timeout}s: {probe.counts()}, {sink.count} mails at SMTP")


# -- 4. latency ---------------------------------------------------------------------------


def latency_messages(count: int) -> list[tuple[bytes, bytes]]:
    """Fresh new-ticket mails (no replies, no auto-replies) with their Message-IDs."""
    out = []
    for raw in generate(count * 2 + 50, seed=4242):
        head = raw[: raw.find(b"\r\n\r\n")]
        if _AUTO.search(head):
            continue
        out.append((raw, _MSGID.search(head).group(1)))
        if len(out) == count:
            break
    return out


def measure_latency(dove: Dovecot, sink: Sink, count: int, rate: float) -> dict:
    msgs = latency_messages(count)
    c = dove.connect()
    sent: dict[bytes, float] = {}
    try:
        t0 = time.monotonic()
        for k, (raw, mid) in enumerate(msgs):
            delay = t0 + k / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent[mid] = time.monotonic()
            typ, data = c.append("INBOX", None, None, raw)
            assert typ == "OK", data
    finally:
        c.logout()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with sink.lock:
            if all(mid in sink.acks for mid in sent):
                break
        time.sleep(0.05)
    with sink.lock:
        lat = sorted(sink.acks[mid] - t for mid, t in sent.items() if mid in sink.acks)
    missing = len(sent) - len(lat)
    if not lat:
        return {"count": 0, "missing": missing}
    return {
        "count": len(lat),
        "missing": missing,
        "p50": statistics.median(lat),
        "p99": lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))],
        "max": lat[-1],
    }


# -- main ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from aiosmtpd.controller import Controller

    results: dict = {"n": args.n, "cores": os.cpu_count()}
    with ExitStack() as stack:
        base = Path(tempfile.mkdtemp(prefix="maild-bench-"))
        base.chmod(0o755)  # Dovecot's unprivileged processes must reach its directory
        if args.keep:
            log(f"keeping {base}")
        else:
            stack.callback(shutil.rmtree, base, True)
        dove = Dovecot(base)
        stack.callback(dove.down)
        dove.up()
        log(f"Dovecot on 127.0.0.1:{dove.port}")

        msgs = list(generate(args.n, args.seed))
        t0 = time.perf_counter()
        dove.seed(msgs)
        size = sum(map(len, msgs))
        log(
            f"seeded {len(msgs)} msgs ({size / 1e6:.1f} MB, avg {size / len(msgs) / 1024:.1f} KB)"
            f" in {time.perf_counter() - t0:.2f}s"
        )
        assert dove.count("INBOX") == args.n

        n, t_floor, t_fetch, floor_cpu = asyncio.run(_floor(dove.port, 250))
        floor = n / t_floor
        results["floor"] = floor
        results["floor_cpu_ms"] = floor_cpu / n * 1000
        log(f"floor: {n} msgs in {t_floor:.2f}s (fetch {t_fetch:.2f}s) = {floor:.0f} msgs/s")

        sink = Sink()
        smtp_port = free_port()
        controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
        controller.start()
        stack.callback(controller.stop)

        db_url = f"sqlite:///{base / 'state' / 'maild.db'}"
        if args.pg:
            db_url = private_schema(args.pg, stack)
        config = write_config(base, dove.port, smtp_port, db_url)
        proc = MaildProcess(config, base, args.profile, args.spy)
        stack.callback(proc.stop)
        proc.wait_log("imap_connected", 60)
        cpu0, own0, dove0 = proc.cpu(), time.process_time(), dove.cpu()
        probe = DbProbe(db_url)
        trail: list = []
        (inbound, outbox, _, acks), last_ack, last = wait_ingested(
            probe, sink, args.n, proc, args.timeout, trail, dove.cpu
        )
        cpu1, own1, dove1 = proc.cpu(), time.process_time(), dove.cpu()
        # CPU until the last acknowledgement (the first poll that saw them all), and in all
        cpu_ack, own_ack, dove_ack = (
            next((c, o, d) for a, c, o, d in trail if a >= acks) if acks else (cpu1, own1, dove1)
        )
        for label, cpu, own, dv in (
            ("ack", cpu_ack, own_ack, dove_ack),
            ("all", cpu1, own1, dove1),
        ):
            used = {pid: cpu[pid] - cpu0.get(pid, 0.0) for pid in cpu}
            results[f"{label}_sink_cpu_ms"] = (own - own0) / args.n * 1000
            results[f"{label}_dovecot_cpu_ms"] = (dv - dove0) / args.n * 1000
            results[f"{label}_cpu_ms"] = sum(used.values()) / args.n * 1000
            results[f"{label}_cpu_ms_by_role"] = by_role = {}
            for pid, secs in used.items():
                role = MaildProcess.role(pid)
                by_role[role] = by_role.get(role, 0.0) + secs / args.n * 1000
        connected = proc.events("imap_connected")[0]
        committed = max(proc.events("message_ingested"))
        done = max(committed, last_ack)  # every ticket committed, every ack accepted
        results.update(
            ingest=args.n / (done - connected),
            ingest_all_mail=args.n / (max(done, last) - connected),
            ingest_from_start=args.n / (done - proc.started_wall),
            startup=connected - proc.started_wall,
            outbox=outbox,
            acks=acks,
        )
        processed = dove.count("maild/processed") + dove.count("maild/quarantine")
        log(
            f"maild: {args.n} msgs: last ticket committed {committed - connected:.2f}s and last"
            f" of {acks} acks accepted {last_ack - connected:.2f}s after IMAP connected"
            f" (start-up {results['startup']:.2f}s); all {outbox} mails"
            f" {last - connected:.2f}s; moved {processed}"
        )
        if args.latency:
            lat = measure_latency(dove, sink, args.latency, args.rate)
            results["latency"] = lat
        errors = proc.errors()
        proc.stop()
        results["errors"] = len(errors)
        for e in errors[:10]:
            log(f"maild: {e}")

    db = "PostgreSQL" if args.pg else "SQLite"
    print(f"maild ingestion benchmark: {args.n} messages, {results['cores']} cores, {db}")
    print(f"  floor (aioimaplib 250-UID FETCH + mail-parser): {results['floor']:8.0f} msgs/s")
    print(
        f"  maild (IMAP connected -> every ticket committed and every ack accepted):"
        f" {results['ingest']:6.0f} msgs/s"
    )
    print(f"  ratio maild/floor: {results['ingest'] / results['floor']:.0%} (goal >= 50%)")
    print(
        f"  also: from process start {results['ingest_from_start']:.0f} msgs/s"
        f" (start-up {results['startup']:.2f}s); until all {results['outbox']} mails"
        f" (operators' copies too) accepted {results['ingest_all_mail']:.0f} msgs/s"
    )
    print(f"  CPU per message: floor {results['floor_cpu_ms']:.2f} ms; maild, in ms:")
    for label, what in (("ack", "until the last ack"), ("all", "until all mail sent")):
        roles = results[f"{label}_cpu_ms_by_role"]
        print(
            f"    {what}: {results[f'{label}_cpu_ms']:.2f} ("
            + ", ".join(f"{k} {v:.2f}" for k, v in sorted(roles.items()))
            + f"); the bench's SMTP sink and probe {results[f'{label}_sink_cpu_ms']:.2f};"
            f" Dovecot {results[f'{label}_dovecot_cpu_ms']:.2f}"
        )
    if "latency" in results:
        lat = results["latency"]
        if lat["count"]:
            print(
                f"  latency append -> ack ({lat['count']} msgs at {args.rate:g}/s, IDLE): "
                f"p50 {lat['p50']:.2f}s  p99 {lat['p99']:.2f}s  max {lat['max']:.2f}s"
                f"  (goal p99 < 2s){'  MISSING ' + str(lat['missing']) if lat['missing'] else ''}"
            )
        else:
            print(f"  latency: no acknowledgement received ({lat['missing']} missing)")
    if results["errors"]:
        print(f"  {results['errors']} error lines in maild's log")
    if args.json:
        print(json.dumps(results))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=1000, help="messages in the backlog (default 1000)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--latency", type=int, default=120, help="messages for the latency run (0: skip)"
    )
    ap.add_argument("--rate", type=float, default=5.0, help="appends per second in the latency run")
    ap.add_argument(
        "--pg",
        help="PostgreSQL database URL (postgresql+psycopg://user@host/db) instead of SQLite;"
        " a private schema is created and dropped",
    )
    ap.add_argument("--timeout", type=float, default=300, help="seconds allowed for the backlog")
    ap.add_argument("--profile", help="run maild under cProfile, stats to this file")
    ap.add_argument("--spy", help="sample maild with py-spy (--gil), raw stacks to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    return run(ap.parse_args())


if __name__ == "__main__":
    sys.exit(main())
