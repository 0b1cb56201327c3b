"""tests/CLAIMS.md names, for each README promise, the tests that prove it: every one must exist.

Node ids are checked against the test files' syntax trees (no collection, no imports): a function
defined at a module's top level, and for `test_x[id]` an id its `parametrize` marks give it.
"""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CLAIMS = TESTS / "CLAIMS.md"
NODE_ID = re.compile(r"tests/(test_\w+\.py)::(\w+)(?:\[([^\]\s]+)\])?")


def _param_ids(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str] | None:
    """The ids pytest gives a function's parametrized cases (None: not parametrized, or ids this
    reading cannot work out from literals)."""
    per_mark: list[list[str]] = []
    for decorator in function.decorator_list:
        if not (isinstance(decorator, ast.Call) and ast.unparse(decorator.func).endswith("mark.parametrize")):
            continue
        ids = next((k.value for k in decorator.keywords if k.arg == "ids"), None)
        values = decorator.args[1] if len(decorator.args) > 1 else None
        try:
            found = ast.literal_eval(ids if ids is not None else values) if (ids or values) else None
        except ValueError:
            return None
        if not isinstance(found, list | tuple) or not all(isinstance(v, str | int) for v in found):
            return None
        per_mark.append([str(v) for v in found])
    if not per_mark:
        return None
    # Stacked marks: the one nearest the function comes first in the id.
    return {"-".join(parts) for parts in itertools.product(*reversed(per_mark))}


def _functions(path: Path) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    """The functions defined at a test module's top level (none where it does not exist)."""
    if not path.exists():
        return {}
    body = ast.parse(path.read_text()).body
    return {node.name: node for node in body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def missing(text: str, tests: Path = TESTS) -> list[str]:
    """The node ids in `text` that name no test in `tests`."""
    absent = []
    modules: dict[str, dict[str, ast.FunctionDef | ast.AsyncFunctionDef]] = {}  # each parsed once
    for match in NODE_ID.finditer(text):
        module, name, param = match.groups()
        if module not in modules:
            modules[module] = _functions(tests / module)
        function = modules[module].get(name)
        ids = _param_ids(function) if function is not None else None
        if function is None or (param is not None and (ids is None or param not in ids)):
            absent.append(match.group())
    return absent


def test_every_listed_test_exists() -> None:
    text = CLAIMS.read_text()
    assert len(NODE_ID.findall(text)) >= 50  # the table was read
    assert missing(text) == []


def test_every_promise_has_a_test() -> None:
    rows = [line for line in CLAIMS.read_text().splitlines() if line.startswith("| ") and "---" not in line]
    promises = [row for row in rows if not row.startswith("| promise |")]
    assert len(promises) >= 40
    assert [row for row in promises if not NODE_ID.search(row)] == []


def test_a_name_that_is_not_a_test_is_reported() -> None:
    listed = (
        "tests/test_watch.py::test_a_second_daemon_refuses_or_waits "
        "tests/test_watch.py::test_no_such_thing "
        "tests/test_no_such_file.py::test_x "
        "tests/test_watch.py::test_stopped_mid_batch_then_restarted_loses_nothing_and_repeats_nothing[sigkill] "
        "tests/test_watch.py::test_stopped_mid_batch_then_restarted_loses_nothing_and_repeats_nothing[sighup] "
        "tests/test_watch.py::test_a_second_daemon_refuses_or_waits[x]"
    )
    assert missing(listed) == [
        "tests/test_watch.py::test_no_such_thing",
        "tests/test_no_such_file.py::test_x",
        "tests/test_watch.py::test_stopped_mid_batch_then_restarted_loses_nothing_and_repeats_nothing[sighup]",
        "tests/test_watch.py::test_a_second_daemon_refuses_or_waits[x]",
    ]
