"""IMAP source (aioimaplib): fetch in bounded batches, ingest, then move.

A message leaves the inbox (UID MOVE to processed_folder or quarantine_folder) only after
its outcome is committed. The backlog is read in chunks of `fetch_batch` UIDs, so tens of
thousands of waiting messages neither stall the daemon nor fill its memory. New mail is
noticed with IDLE where the server offers it, else by polling. Any network or server error
leads to a reconnect with exponential backoff, forever.
"""

from __future__ import annotations

import asyncio
import re
import ssl

import aioimaplib
from aioimaplib.aioimaplib import Command

from maild.config import MailboxConfig
from maild.ingest import InboundItem, TemporaryFailure
from maild.log import get_logger
from maild.sources.runs import IngestFn, Ramp, feed

log = get_logger("maild.imap")

_FETCH_HEAD = re.compile(rb"^\d+ FETCH \(.*UID (\d+)")
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")


class ImapError(Exception):
    pass


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(resp, what: str):
    if resp.result != "OK":
        raise ImapError(f"{what}: {resp.result} {resp.lines[-1:]!r}")
    return resp


def uid_ranges(uids: list[int]) -> str:
    """[1,2,3,7] -> '1:3,7' (short commands for big batches)."""
    out: list[str] = []
    start = prev = None
    for u in sorted(uids):
        if start is None:
            start = prev = u
        elif u == prev + 1:
            prev = u
        else:
            out.append(f"{start}:{prev}" if start != prev else str(start))
            start = prev = u
    if start is not None:
        out.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(out)


def parse_fetch(lines: list) -> list[tuple[int, bytes]]:
    """(uid, body) pairs out of an aioimaplib UID FETCH (UID BODY.PEEK[]) response."""
    out: list[tuple[int, bytes]] = []
    uid: int | None = None
    for line in lines:
        if isinstance(line, bytearray):
            if uid is not None:
                out.append((uid, bytes(line)))
                uid = None
            continue
        m = _FETCH_HEAD.match(line)
        if m:
            uid = int(m.group(1))
    return out


class ImapSource:
    def __init__(
        self,
        cfg: MailboxConfig,
        ingest: IngestFn,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_backoff: float = 300.0,
        idle_timeout: float = 25 * 60,
    ) -> None:
        self.cfg = cfg
        self.ingest = ingest
        self.ssl_context = ssl_context or ssl.create_default_context(
            cafile=str(cfg.tls_ca_file) if cfg.tls_ca_file else None
        )
        self.max_backoff = max_backoff
        self.idle_timeout = idle_timeout
        self.client: aioimaplib.IMAP4 | None = None
        self.ramp = Ramp()
        self._moving = asyncio.Lock()
        self.uidvalidity: int | None = None
        self.connected = asyncio.Event()  # for tests and health: set while logged in

    # -- connection -----------------------------------------------------------------------

    async def connect(self) -> aioimaplib.IMAP4:
        cfg = self.cfg
        if cfg.security == "ssl":
            client = aioimaplib.IMAP4_SSL(
                cfg.host, cfg.effective_port, timeout=cfg.timeout, ssl_context=self.ssl_context
            )
        else:
            client = aioimaplib.IMAP4(cfg.host, cfg.effective_port, timeout=cfg.timeout)
        await client.wait_hello_from_server()
        if cfg.security == "starttls":
            await self._starttls(client)
        password = cfg.password.get_secret_value() if cfg.password else ""
        _check(await client.login(cfg.username, password), "LOGIN")
        for folder in (cfg.processed_folder, cfg.quarantine_folder, cfg.receipts_folder):
            await client.create(_quote(folder))  # NO when it exists: fine
        resp = _check(await client.select(_quote(cfg.folder)), f"SELECT {cfg.folder}")
        m = next((_UIDVALIDITY.search(x) for x in resp.lines if _UIDVALIDITY.search(x)), None)
        self.uidvalidity = int(m.group(1)) if m else None
        return client

    async def _starttls(self, client: aioimaplib.IMAP4) -> None:
        proto = client.protocol
        resp = await proto.execute(Command("STARTTLS", proto.new_tag(), loop=proto.loop))
        _check(resp, "STARTTLS")
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(
            proto.transport, proto, self.ssl_context, server_hostname=self.cfg.host
        )
        proto.transport = transport
        await proto.capability()  # capabilities may change after TLS (RFC 3501 6.2.1)

    async def close(self) -> None:
        client, self.client = self.client, None
        self.connected.clear()
        if client is None:
            return
        try:
            if client.has_pending_idle():
                client.idle_done()
            await asyncio.wait_for(client.logout(), 5)
        except Exception:
            pass

    # -- work -----------------------------------------------------------------------------

    async def search_all(self) -> list[int]:
        resp = _check(await self.client.uid_search("ALL", charset=None), "UID SEARCH")
        uids: list[int] = []
        for line in resp.lines[:-1]:
            uids.extend(int(x) for x in line.split() if x.isdigit())
        return uids

    async def process_batch(self, uids: list[int], stopping: asyncio.Event | None = None) -> int:
        """Fetch, ingest and move one batch. Returns how many were handled. When the daemon
        is stopping, the message in hand is finished and the rest waits for the next run.

        The fetched messages go to ingestion in runs that share a transaction (see
        maild.sources.runs); each run leaves the inbox as soon as it is committed."""
        resp = _check(
            await self.client.uid("fetch", uid_ranges(uids), "(UID BODY.PEEK[])"), "UID FETCH"
        )

        def items(part):
            taken = list(part)
            return taken, [InboundItem(raw, self.cfg.name, self.uidvalidity, u) for u, raw in taken]

        async def settle(done, results) -> None:
            moves: dict[str, list[int]] = {}
            for (uid, _), result in zip(done, results, strict=True):
                moves.setdefault(self.cfg.folder_for(result.folder), []).append(uid)
            async with self._moving:  # one IMAP command at a time on this connection
                for folder, moved in moves.items():
                    await self.move(moved, folder)

        stop = stopping.is_set if stopping is not None else None
        return await feed(self.ingest, parse_fetch(resp.lines), items, settle, self.ramp, stop)

    async def move(self, uids: list[int], folder: str) -> None:
        uidset = uid_ranges(uids)
        if "MOVE" in self.client.protocol.capabilities:
            _check(await self.client.uid("move", uidset, _quote(folder)), "UID MOVE")
            return
        _check(await self.client.uid("copy", uidset, _quote(folder)), "UID COPY")
        _check(await self.client.uid("store", uidset, "+FLAGS.SILENT", r"(\Deleted)"), "STORE")
        if "UIDPLUS" in self.client.protocol.capabilities:
            _check(await self.client.uid("expunge", uidset), "UID EXPUNGE")
        else:
            _check(await self.client.expunge(), "EXPUNGE")

    async def drain(self, stopping: asyncio.Event) -> int:
        """Process everything in the folder, batch by batch."""
        total = 0
        while not stopping.is_set():
            uids = await self.search_all()
            if not uids:
                return total
            for i in range(0, len(uids), self.cfg.fetch_batch):
                if stopping.is_set():
                    return total
                total += await self.process_batch(uids[i : i + self.cfg.fetch_batch], stopping)
        return total

    async def wait_for_mail(self, stopping: asyncio.Event) -> None:
        self.ramp.reset()  # the next mail is alone: a transaction of its own, at once
        client = self.client
        if not (self.cfg.idle and client.has_capability("IDLE")):
            await _wait(stopping, self.cfg.poll_interval)
            return
        idle = await client.idle_start(timeout=self.idle_timeout)
        stop = asyncio.ensure_future(stopping.wait())
        try:
            while client.has_pending_idle() and not stopping.is_set():
                push = asyncio.ensure_future(client.wait_server_push(timeout=self.idle_timeout))
                done, _ = await asyncio.wait({push, stop}, return_when=asyncio.FIRST_COMPLETED)
                if push not in done:
                    push.cancel()
                    break
                lines = push.result()
                if lines == aioimaplib.STOP_WAIT_SERVER_PUSH or any(
                    b"EXISTS" in x for x in (lines if isinstance(lines, list) else [])
                ):
                    break
        finally:
            stop.cancel()
            if client.has_pending_idle():
                client.idle_done()
            await asyncio.wait_for(idle, self.cfg.timeout)

    async def run(self, stopping: asyncio.Event) -> None:
        backoff = 1.0
        while not stopping.is_set():
            try:
                self.client = await self.connect()
                self.connected.set()
                log.info("imap_connected", mailbox=self.cfg.name, host=self.cfg.host)
                backoff = 1.0
                while not stopping.is_set():
                    await self.drain(stopping)
                    if stopping.is_set():
                        break
                    await self.wait_for_mail(stopping)
            except TemporaryFailure as e:
                log.warning("ingest_temporary_failure", mailbox=self.cfg.name, error=str(e))
            except (TimeoutError, OSError, ImapError, aioimaplib.Abort) as e:
                log.warning(
                    "imap_error",
                    mailbox=self.cfg.name,
                    error=f"{type(e).__name__}: {e}",
                    retry_in=backoff,
                )
            except Exception as e:  # never let one mailbox die: log and reconnect
                log.exception("imap_unexpected_error", mailbox=self.cfg.name, error=str(e))
            finally:
                await self.close()
            if not stopping.is_set():
                await _wait(stopping, backoff)
                backoff = min(backoff * 2, self.max_backoff)


async def _wait(stopping: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        pass
