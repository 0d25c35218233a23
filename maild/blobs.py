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


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._dirs: set[Path] = set()  # directories known to exist
        self._counter = itertools.count()

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if not target.exists():
            if target.parent not in self._dirs:
                target.parent.mkdir(parents=True, exist_ok=True)
                self._dirs.add(target.parent)
            # a name no other writer uses: process, thread and a counter
            tmp = (
                target.parent / f".tmp-{os.getpid()}-{threading.get_ident()}-{next(self._counter)}"
            )
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        return digest

    def get(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()
