"""Engine, sessions and schema upgrades (Alembic).

SQLite is the embedded default, PostgreSQL the production database. On SQLite every
transaction starts with BEGIN IMMEDIATE: writers queue on the lock (busy_timeout) instead
of failing half-way with "database is locked" when a read turns into a write.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker

import maild.batch  # noqa: F401  (hooks the write-behind of appended rows into sessions)

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str, *, echo: bool = False, read_only: bool = False) -> Engine:
    """read_only (SQLite): transactions begin DEFERRED, so a reader neither waits for the
    write lock nor holds it; in WAL mode it reads the last committed state."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, echo=echo, connect_args={"timeout": 60, "check_same_thread": False}
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a process kill
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=5)


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed on success, rolled back on any exception."""
        with self.sessions() as session, session.begin():
            yield session

    def session(self) -> Session:
        return self.sessions()

    @cached_property
    def reader(self) -> Engine:
        """For reads that must not queue behind writers (SQLite): the outbox sender's."""
        if self.engine.dialect.name != "sqlite":
            return self.engine
        return make_engine(self.url, read_only=True)

    @property
    def sqlite_path(self) -> Path | None:
        """The database file, when the database is a SQLite file."""
        if self.engine.dialect.name != "sqlite":
            return None
        db = self.engine.url.database
        return Path(db) if db and db != ":memory:" else None

    def upgrade(self) -> None:
        upgrade(self.engine)

    def is_empty(self) -> bool:
        return not inspect(self.engine).has_table("alembic_version")

    def dispose(self) -> None:
        self.engine.dispose()
        if "reader" in self.__dict__ and self.reader is not self.engine:
            self.reader.dispose()


def alembic_config(engine: Engine):
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    url = engine.url.render_as_string(hide_password=False)
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser escaping
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), revision)
