"""Hostile run-server replies: each a recorded error with a short clear reason, bounded in time and
memory; a redirect is never followed, so the API key never reaches another host."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.cli import run_triage
from tests.support.run_server import FakeRunServer, ScriptedByUid
from tests.support.store_view import rows
from triage.run_replies import MAX_RESPONSE_BYTES

pytestmark = pytest.mark.integration

TIMEOUT_S = 3.0


def test_hostile_replies_end_as_recorded_errors_with_clear_reasons(tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    with FakeRunServer(["ok"]) as elsewhere:
        other_host = elsewhere.url.replace("127.0.0.1", "localhost") + "/runs/wait"
        script = {
            1: ["huge"],
            2: ["huge-declared"],
            3: ["bad-utf8"],
            4: ["deep-json:100000"],
            5: ["deep-json:500"],
            6: ["drip"],
            7: [f"redirect:{other_host}"],
            8: ["html"],
            9: ["deep-json:10"],  # an ordinary depth is fine
        }
        for uid in script:
            (folder / f"{uid}.eml").write_bytes(
                b"From: a@example.com\r\nSubject: s%d\r\nMessage-ID: <r%d@x>\r\n\r\nhi" % (uid, uid)
            )
        db = tmp_path / "t.db"
        env = {
            "TRIAGE_STORE__URL": f"sqlite:///{db}",
            "TRIAGE_LANGGRAPH__TIMEOUT_S": str(TIMEOUT_S),
            "TRIAGE_LANGGRAPH__MAX_ATTEMPTS": "2",
            "TRIAGE_LANGGRAPH__BACKOFF_CAP_S": "0.05",
            "TRIAGE_LANGGRAPH__API_KEY": "lg-key-never-elsewhere",
        }
        with FakeRunServer(ScriptedByUid(script)) as server:
            env["TRIAGE_LANGGRAPH__URL"] = server.url
            started = time.monotonic()
            done = run_triage("backfill", "--source", str(folder), cwd=tmp_path, env=env, timeout=120)
            elapsed = time.monotonic() - started
        assert elsewhere.paths == [], "the redirect was followed"
    assert done.returncode == 1, done.stderr  # the failed runs stay undecided, and it says so
    assert "8 messages stay undecided (8 failed runs)" in done.stderr
    # Two attempts of the slowest (drip) bound the whole run; everything else is quick.
    assert elapsed < 2 * TIMEOUT_S + 20, elapsed
    found = {
        int(uid): (status, kind, text)  # type: ignore[call-overload]
        for uid, status, kind, text in rows(
            db,
            "SELECT m.uid, d.status, d.error_kind, d.error_text FROM messages m "
            "JOIN decisions d ON d.message_pk = m.id",
        )
    }
    expected = {
        1: ("error", "bad-body", f"response larger than {MAX_RESPONSE_BYTES} bytes"),
        2: ("error", "bad-body", f"response of 1073741824 bytes, over {MAX_RESPONSE_BYTES}"),
        3: ("error", "bad-body", "not UTF-8 (invalid byte at 44)"),
        4: ("error", "bad-body", "JSON nested too deeply"),
        5: ("error", "bad-body", "JSON nested deeper than 64 levels"),
        6: ("error", "timeout", f"no answer within {TIMEOUT_S:g} s"),
        7: ("error", "http", f"HTTP 307: redirect to {other_host} (not followed)"),
        8: ("error", "bad-body", "not JSON (text/html): <!DOCTYPE html><html><head><title>Sign in"),
        9: ("ok", None, None),
    }
    for uid, (status, kind, text) in expected.items():
        got = found[uid]
        assert got[:2] == (status, kind), (uid, got)
        assert text is None or str(got[2]).startswith(text), (uid, got)
        assert got[2] is None or len(str(got[2])) <= 200, (uid, got)
