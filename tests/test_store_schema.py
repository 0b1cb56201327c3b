"""The migrations build exactly the schema the models describe, so later changes stay honest."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from triage.store import Store
from triage.store.models import SEARCH_INDEX, Base


def _is_model(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Everything but the FTS5 index and its shadow tables, which no model describes by design."""
    search_table = name == SEARCH_INDEX or (name or "").startswith(f"{SEARCH_INDEX}_")
    return not (type_ == "table" and reflected and compare_to is None and search_table)


def test_migrated_schema_matches_the_models(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 't.db'}")
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": _is_model})
        diff = compare_metadata(context, Base.metadata)
    store.close()
    assert diff == []


def test_opening_twice_is_a_no_op(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    Store.open(url).close()
    store = Store.open(url)
    assert store.status_counts() == {}
    store.close()


def test_schema_head_names_the_newest_migration() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from triage.store.engine import MIGRATIONS, SCHEMA_HEAD

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_HEAD
