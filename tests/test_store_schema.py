"""The migrations build exactly the schema the models describe, so later changes stay honest."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from triage.store.decisions import Store
from triage.store.models import Base
from triage.store.tables import SEARCH_DOCUMENT, SEARCH_INDEX, metadata


def _is_model(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Everything but the full-text search, which no model describes by design: SQLite's FTS5 index
    and its shadow tables, PostgreSQL's document column and its index."""
    search_table = name == SEARCH_INDEX or (name or "").startswith(f"{SEARCH_INDEX}_")
    search_document = name in (SEARCH_DOCUMENT, f"ix_decisions_{SEARCH_DOCUMENT}")
    unmodelled = type_ in ("table", "column", "index") and reflected and compare_to is None
    return not (unmodelled and (search_table or search_document))


def test_migrated_schema_matches_the_models(any_store: Store) -> None:
    with any_store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": _is_model})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_opening_twice_is_a_no_op(store_url: str) -> None:
    url = store_url
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


@pytest.mark.parametrize(
    "model",
    sorted((m.class_ for m in Base.registry.mappers), key=lambda m: m.__name__),
    ids=lambda m: m.__name__,
)
def test_each_model_types_exactly_its_tables_columns(model: type[Base]) -> None:
    """The ORM classes only annotate tables.py's columns: a column added to one and not the other,
    or nullable in one and not the other, fails here."""
    table = model.__table__
    annotated = {name: str(kind) for name, kind in model.__annotations__.items() if not name.startswith("__")}
    assert set(annotated) == {column.key for column in table.columns}
    for column in table.columns:
        optional = annotated[column.key].endswith("| None]")
        assert optional == (column.nullable and not column.primary_key), column.key
