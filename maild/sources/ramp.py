"""How many messages a source hands to one ingestion transaction.

A lone new message is committed (and acknowledged) at once; a backlog is taken in runs
that double up to `limit`, so a commit costs little per message while the first tickets
of a burst are still committed within milliseconds, and a stop or a bad message costs
at most one run of work.
"""

from __future__ import annotations


class Ramp:
    def __init__(self, limit: int = 50) -> None:
        self.limit = limit
        self.size = 1

    def next(self) -> int:
        """The size of the next run (then the one after is twice as large)."""
        size = self.size
        self.size = min(self.size * 2, self.limit)
        return size

    def reset(self) -> None:
        """The source caught up: the next message starts a new ramp."""
        self.size = 1
