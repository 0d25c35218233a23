"""Content-addressed file store under state_dir: raw messages and attachments by sha256.

Files are written before the database transaction that refers to them commits; a crash in
between leaves an unreferenced file, which is harmless (the same content maps to the same
name when the message is processed again).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
from pathlib import Path

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_REMEMBERED = 100_000  # digests this process wrote, skipped when they come again


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._dirs: set[Path] = set()  # directories known to exist
        self._written: set[str] = set()
        self._counter = itertools.count()

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if digest in self._written:
            return digest
        target = self.path(digest)
        if target.parent not in self._dirs:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(target.parent)
        # written under a name no other writer uses (process, thread, counter), then
        # linked in place: a reader never sees half a file, and a blob already there
        # (another run, another process), which committed rows may point to, is never
        # replaced. Plain os calls: a Python file object adds three system calls.
        tmp = f"{target.parent}/.tmp-{os.getpid()}-{threading.get_ident()}-{next(self._counter)}"
        try:
            fd = os.open(tmp, _CREATE, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            try:
                os.link(tmp, target)
            except FileExistsError:
                pass  # the same content, by its name
            except OSError:  # a file system without hard links
                if not target.exists():
                    os.replace(tmp, target)
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if len(self._written) >= _REMEMBERED:
            self._written.clear()
        self._written.add(digest)
        return digest

    def get(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()
