"""One error tree: every exception triage defines is a TriageError, so the CLI maps each to one line."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import triage
from triage.errors import TriageError

# Run (as `python -m triage`, by Alembic, or by `langgraph dev`), not imported by triage itself.
_NOT_IMPORTED = ("triage.__main__", "triage.store.migrations", "triage.assistant")


def _modules() -> list[str]:
    names = [info.name for info in pkgutil.walk_packages(triage.__path__, "triage.")]
    return [name for name in names if not name.startswith(_NOT_IMPORTED)]


def test_every_exception_class_defined_in_triage_is_a_triage_error() -> None:
    defined = {
        cls
        for name in _modules()
        for _, cls in inspect.getmembers(importlib.import_module(name), inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__.startswith("triage.")
    }
    assert len(defined) >= 9  # the tree in triage.errors, at least
    assert sorted(cls.__qualname__ for cls in defined if not issubclass(cls, TriageError)) == []


def test_the_walk_sees_every_module() -> None:
    names = _modules()
    assert {"triage.errors", "triage.pipeline", "triage.store.decisions", "triage.cli.backfill"} <= set(names)
