"""The outbox sender's journal of accepted mail, for an outbox kept in SQLite.

SQLite has one writer at a time, and ingestion holds the write lock for a batch of
messages. Marking each accepted mail "sent" in the outbox table would make every
acknowledgement wait for that lock, one after the other (they are sent strictly one at a
time, see maild.outbox). So the sender notes each acceptance here instead: one small
commit in a file of its own, never waiting on ingestion. The notes are folded into the
outbox table in bulk, off the sending path, and forgotten once folded.

A kill between the SMTP server's acceptance and the note re-sends that one mail, as a kill
between acceptance and the mark always did; a kill between fold and forget folds the
same notes again, which changes nothing.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path


def journal_path(db_file: Path) -> Path:
    return db_file.with_name(db_file.name + ".sent")


class SentJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # one connection: the sending loop and the folder
        self._conn = sqlite3.connect(
            path, timeout=60, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # survives a process kill
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS sent (id INTEGER PRIMARY KEY, sent_at TEXT NOT NULL)"
        )

    def record(self, row_id: int, at: datetime) -> None:
        """Outbox row `row_id` was accepted by the server (committed on return)."""
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO sent (id, sent_at) VALUES (?, ?)",
                (row_id, at.astimezone(UTC).isoformat()),
            )

    def notes(self) -> dict[int, datetime]:
        """Accepted rows not yet folded into the outbox table, with their times."""
        with self._lock:
            rows = self._conn.execute("SELECT id, sent_at FROM sent").fetchall()
        return {row_id: datetime.fromisoformat(at) for row_id, at in rows}

    def forget(self, ids: list[int]) -> None:
        with self._lock:
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                self._conn.execute(
                    f"DELETE FROM sent WHERE id IN ({','.join('?' * len(part))})", part
                )

    def close(self) -> None:
        with self._lock:
            self._conn.close()
