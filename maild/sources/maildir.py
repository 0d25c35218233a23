"""Maildir source: for hosts where the MTA delivers locally, and the embedded default.

Messages in new/ and cur/ are ingested in name order, then moved into the Maildir++
subfolders `.<processed_folder>` / `.<quarantine_folder>` (slashes become dots). The
folder is re-read every `poll_interval` seconds (or sooner when `wakeup` is set).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from maild.config import MailboxConfig
from maild.ingest import InboundItem, TemporaryFailure
from maild.log import get_logger
from maild.sources.runs import IngestFn, Ramp, feed

log = get_logger("maild.maildir")


def ensure_maildir(path: Path) -> None:
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True, exist_ok=True)


def subfolder(root: Path, name: str) -> Path:
    return root / ("." + name.replace("/", "."))


class MaildirSource:
    def __init__(self, cfg: MailboxConfig, ingest: IngestFn) -> None:
        assert cfg.path is not None
        self.cfg = cfg
        self.root = cfg.path
        self.ingest = ingest
        self.wakeup = asyncio.Event()
        ensure_maildir(self.root)
        self.targets = {
            dest: subfolder(self.root, cfg.folder_for(dest))
            for dest in ("processed", "quarantine", "receipts")
        }
        for t in self.targets.values():
            ensure_maildir(t)

    def pending(self) -> list[Path]:
        files: list[Path] = []
        for sub in ("new", "cur"):
            with os.scandir(self.root / sub) as it:
                files.extend(Path(e.path) for e in it if e.is_file() and not e.name.startswith("."))
        return sorted(files, key=lambda p: p.name)

    async def drain(self, stopping: asyncio.Event) -> int:
        """Ingest what waits, in runs that share a transaction (see maild.sources.runs);
        each file is moved once its run is committed."""

        def items(part):
            taken, out = [], []
            for path in part:
                try:
                    raw = path.read_bytes()
                except FileNotFoundError:  # taken by someone else
                    continue
                taken.append(path)
                out.append(InboundItem(raw, self.cfg.name))
            return taken, out

        async def settle(done, results) -> None:
            for path, result in zip(done, results, strict=True):
                target = self.targets.get(result.folder, self.targets["processed"])
                os.replace(path, target / "cur" / path.name)

        return await feed(self.ingest, self.pending(), items, settle, Ramp(), stopping.is_set)

    async def run(self, stopping: asyncio.Event) -> None:
        backoff = 1.0
        while not stopping.is_set():
            try:
                await self.drain(stopping)
                backoff = 1.0
                delay = self.cfg.poll_interval
            except TemporaryFailure as e:
                log.warning("ingest_temporary_failure", mailbox=self.cfg.name, error=str(e))
                delay, backoff = backoff, min(backoff * 2, 300)
            except OSError as e:
                log.warning("maildir_error", mailbox=self.cfg.name, error=str(e))
                delay, backoff = backoff, min(backoff * 2, 300)
            waits = [
                asyncio.ensure_future(stopping.wait()),
                asyncio.ensure_future(self.wakeup.wait()),
            ]
            await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            self.wakeup.clear()
