"""The migrations build exactly the schema the models describe, so later changes stay honest."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from triage.store import Store
from triage.store.models import Base


def test_migrated_schema_matches_the_models(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 't.db'}")
    with store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    store.close()
    assert diff == []


def test_opening_twice_is_a_no_op(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    Store.open(url).close()
    store = Store.open(url)
    assert store.status_counts() == {}
    store.close()
