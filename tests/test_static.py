"""The code's own checks: ruff's lint and format, and mypy over the package.

They run as subprocesses started when collection ends (tests.support.static_checks), beside the
other tests; each test here waits for its check's result.
"""

from __future__ import annotations

import pytest

from tests.support import static_checks


@pytest.mark.parametrize("check", list(static_checks.CHECKS))
def test_the_code_passes(check: str) -> None:
    status, output = static_checks.result(check)
    assert status == 0, output
