"""Every real-world mail of the Zammad corpus ingests through the daemon's path."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from maild.clock import ManualClock
from maild.db import Database
from maild.ingest import InboundItem, Ingestor, Runtime

from .conftest import SHARED, make_config

CORPUS = sorted((SHARED / "corpus" / "zammad").glob("*.box"))


@pytest.fixture(scope="module")
def ingestor(tmp_path_factory):
    state = tmp_path_factory.mktemp("corpus")
    cfg = make_config(state)
    db = Database(cfg.database_url)
    db.upgrade()
    rt = Runtime.create(cfg, db=db, clock=ManualClock(datetime(2026, 3, 10, 9, tzinfo=UTC)))
    yield Ingestor(rt)
    db.dispose()


def test_corpus_present():
    assert len(CORPUS) == 117


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_mail_ingests_without_error(ingestor, path):
    result = ingestor.ingest(InboundItem(path.read_bytes(), "corpus"))
    assert result.outcome != "quarantine", result.detail
    assert result.folder == "processed"
