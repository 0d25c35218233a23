"""What the messages of one ingestion transaction share: write-behind rows and lookups.

Articles, attachments, ticket events, message refs, outbox mail and inbound records are
only ever appended by the message that creates them. Through the ORM each costs a unit of
work several times dearer than its INSERT; gathered here, a batch of messages writes them
with one executemany per table. They are written before the session runs any statement
(so every query sees them, as with the ORM's autoflush) and before commit; a rollback
drops them with the rest of the transaction.

A row may point at a Ticket not flushed yet, or at a pending article: the id is taken at
write time. The same object keeps the batch's lookups (Message-IDs known to maild, mail
counted for rate limits, the year's ticket counter), so the messages of a batch neither
query what an earlier one already told nor miss what it has not written yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Table, event, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from maild.models import (
    Article,
    AttachmentRow,
    InboundMessage,
    MessageRef,
    OutboxMessage,
    Ticket,
    TicketCounter,
    TicketEvent,
)

ARTICLES: Table = Article.__table__
ATTACHMENTS: Table = AttachmentRow.__table__
REFS: Table = MessageRef.__table__
EVENTS: Table = TicketEvent.__table__
OUTBOX: Table = OutboxMessage.__table__
INBOUND: Table = InboundMessage.__table__
_ORDER = (ARTICLES, ATTACHMENTS, REFS, EVENTS, OUTBOX, INBOUND)  # foreign keys first
_FOREIGN = ("ticket_id", "article_id")
_INFO_KEY = "maild.batch"
COUNTERS: Table = TicketCounter.__table__


def _resolve(value: Any) -> Any:
    """An id, a not yet flushed ORM object or a pending row -> the id."""
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, dict):
        return value["id"]
    return value.id


class Batch:
    def __init__(self) -> None:
        self.rows: dict[Table, list[dict[str, Any]]] = {t: [] for t in _ORDER}
        self.pending = 0
        self.writing = False
        # Message-ID -> ticket (id or object) for ids looked up or added in this batch;
        # None: looked up, unknown to maild
        self.refs: dict[str, Ticket | int | None] = {}
        # (kind, rate_key) -> mail queued since the batch's rate window began
        self.rate: dict[tuple[str, str], int] = {}
        self.rate_since: datetime | None = None
        self.tickets: list[Ticket] = []
        # year -> [last number taken, last number written to ticket_counters]
        self.seq: dict[int, list[int]] = {}

    # -- write-behind ---------------------------------------------------------------------

    def add(self, table: Table, row: dict[str, Any]) -> dict[str, Any]:
        self.rows[table].append(row)
        self.pending += 1
        return row

    def write(self, session: Session) -> None:
        """Everything pending into the database, in foreign-key order."""
        if self.writing:
            return
        dirty_seq = [(y, s) for y, s in self.seq.items() if s[0] != s[1]]
        if not self.pending and not dirty_seq:
            return
        self.writing = True
        try:
            session.flush()  # new tickets get their ids
            conn = session.connection()
            for year, s in dirty_seq:
                conn.execute(update(COUNTERS).where(COUNTERS.c.year == year).values(last_seq=s[0]))
                s[1] = s[0]
            for table in _ORDER:
                rows = self.rows[table]
                if not rows:
                    continue
                for row in rows:
                    for key in _FOREIGN:
                        if key in row:
                            row[key] = _resolve(row[key])
                if table is ARTICLES and self.rows[ATTACHMENTS]:
                    stmt = insert(table).returning(table.c.id, sort_by_parameter_order=True)
                    params = [{k: v for k, v in r.items() if k != "id"} for r in rows]
                    for row, new_id in zip(rows, conn.execute(stmt, params).scalars(), strict=True):
                        row["id"] = new_id
                else:
                    conn.execute(insert(table), rows)
                self.rows[table] = []
            self.pending = 0
        finally:
            self.writing = False

    # -- lookups --------------------------------------------------------------------------

    def prefetch_refs(self, session: Session, ids: Iterable[str]) -> None:
        """One query for the Message-IDs of a whole batch."""
        wanted = [i for i in dict.fromkeys(ids) if i and i not in self.refs]
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            found = dict(
                session.execute(
                    select(REFS.c.message_id, REFS.c.ticket_id).where(REFS.c.message_id.in_(part))
                ).all()
            )
            for mid in part:
                self.refs[mid] = found.get(mid)

    def load_tickets(self, session: Session) -> None:
        """The tickets of the known Message-IDs, in one query: the batch's messages then
        find them in the session instead of asking one by one."""
        ids = {t for t in self.refs.values() if isinstance(t, int)}
        if ids:
            # held here: the session's identity map keeps objects only while referenced
            self.tickets = session.scalars(select(Ticket).where(Ticket.id.in_(ids))).all()

    def ticket_ids(self, session: Session, ids: list[str]) -> dict[str, Ticket | int]:
        """Which of `ids` maild knows, and their tickets."""
        self.prefetch_refs(session, ids)
        return {i: self.refs[i] for i in ids if self.refs.get(i) is not None}

    def remember(self, message_id: str, ticket: Ticket | int) -> bool:
        """Record a Message-ID of `ticket`; False when it was known already."""
        if self.refs.get(message_id) is not None:
            return False
        self.refs[message_id] = ticket
        self.add(REFS, {"message_id": message_id, "ticket_id": ticket})
        return True

    def prefetch_rates(
        self, session: Session, kinds: Iterable[str], keys: Iterable[str], since: datetime
    ) -> None:
        """Mail of `kinds` per rate key since `since`, for a whole batch in one query."""
        keys = [k for k in dict.fromkeys(keys) if k]
        kinds = list(kinds)
        self.rate_since = since
        counts = {(kind, key): 0 for kind in kinds for key in keys}
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            rows = session.execute(
                select(OUTBOX.c.kind, OUTBOX.c.rate_key, func.count())
                .where(
                    OUTBOX.c.kind.in_(kinds),
                    OUTBOX.c.rate_key.in_(part),
                    OUTBOX.c.created_at >= since,
                )
                .group_by(OUTBOX.c.kind, OUTBOX.c.rate_key)
            ).all()
            for kind, key, n in rows:
                counts[(kind, key)] = n
        self.rate.update(counts)

    def recent(self, session: Session, kind: str, key: str, since: datetime) -> int:
        """Mail of `kind` for `key` since `since`, this batch's pending mail included."""
        if (kind, key) not in self.rate or self.rate_since is None or since < self.rate_since:
            with session.no_autoflush:  # pending mail is counted by queued(), not by SQL
                n = session.scalar(
                    select(func.count())
                    .select_from(OUTBOX)
                    .where(
                        OUTBOX.c.kind == kind,
                        OUTBOX.c.rate_key == key,
                        OUTBOX.c.created_at >= since,
                    )
                )
            pending = sum(
                1 for r in self.rows[OUTBOX] if r["kind"] == kind and r["rate_key"] == key
            )
            return n + pending
        return self.rate[(kind, key)]

    def queued(self, kind: str, key: str | None) -> None:
        if key is not None and (kind, key) in self.rate:
            self.rate[(kind, key)] += 1

    def next_seq(self, session: Session, year: int) -> int:
        """The next ticket number of `year`. The first of a batch updates (so locks) the
        counter row; the others count on from it and the row is written once, before
        commit. A rollback gives every number back: no gaps, no reuse."""
        s = self.seq.get(year)
        if s is not None:
            s[0] += 1
            return s[0]
        bump = (
            update(COUNTERS)
            .where(COUNTERS.c.year == year)
            .values(last_seq=COUNTERS.c.last_seq + 1)
            .returning(COUNTERS.c.last_seq)
        )
        seq = session.execute(bump).scalar_one_or_none()
        if seq is None:  # the year's first ticket (or a concurrent creator is making the row)
            dialect = session.get_bind().dialect.name
            ins = pg_insert if dialect == "postgresql" else sqlite_insert
            session.execute(ins(COUNTERS).values(year=year, last_seq=0).on_conflict_do_nothing())
            seq = session.execute(bump).scalar_one()
        self.seq[year] = [seq, seq]
        return seq


def batch_of(session: Session) -> Batch:
    """The batch state of `session`'s transaction (created on first use)."""
    batch = session.info.get(_INFO_KEY)
    if batch is None:
        batch = session.info[_INFO_KEY] = Batch()
    return batch


def _before_execute(state) -> None:
    batch = state.session.info.get(_INFO_KEY)
    if batch is not None and batch.pending and state.session.autoflush:
        batch.write(state.session)


def _before_commit(session: Session) -> None:
    batch = session.info.get(_INFO_KEY)
    if batch is not None:
        batch.write(session)


def _forget(session: Session, *_args) -> None:
    session.info.pop(_INFO_KEY, None)


# every session of the process: a batch is only ever made by batch_of()
event.listen(Session, "do_orm_execute", _before_execute)
event.listen(Session, "before_commit", _before_commit)
event.listen(Session, "after_commit", _forget)
event.listen(Session, "after_soft_rollback", _forget)
