"""Malformed mail, fuzzed: parsing and rendering never raise, finish in bounded time, and every
message ends recorded."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.cli import run_triage
from tests.support.hostile_mail import FIXTURES, giants, mutated, seeds
from tests.support.run_server import FakeRunServer
from tests.support.store_view import outcomes
from triage.message import Email, Unparseable, parse_email
from triage.prompt import PromptRenderer

# Generous: a parse is milliseconds; the giants take about a second on the development machine.
BOUND_S = 10.0
RENDERER = PromptRenderer()
SEEDS = seeds()
FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
BLOCK_TAGS = ("<email>", "</email>", "<email-headers>", "</email-headers>", "<email-body>", "</email-body>")


def check(raw: bytes) -> Email | Unparseable:
    """Parse and render within the bound; the prompt's blocks are intact whatever the mail holds."""
    started = time.monotonic()
    parsed = parse_email(raw, 4000)
    if isinstance(parsed, Email):
        prompt = RENDERER.render(parsed, account="acct", mailbox="INBOX", threads=[])
        lines = prompt.splitlines()
        for tag in BLOCK_TAGS:
            assert lines.count(tag) == 1, (tag, raw[:200])
        assert "\x00" not in prompt
    elapsed = time.monotonic() - started
    assert elapsed < BOUND_S, f"{elapsed:.1f} s for {raw[:100]!r}"
    return parsed


@FUZZ
@given(st.binary(max_size=4096))
def test_raw_bytes_never_raise(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(st.binary(max_size=2048))
def test_raw_bytes_after_plausible_headers_never_raise(tail: bytes) -> None:
    check(b"From: a@example.com\r\nSubject: fuzz\r\n" + tail)


@settings(FUZZ, max_examples=500)
@given(st.randoms(use_true_random=False))
def test_structured_mutations_never_raise(rng: random.Random) -> None:
    check(mutated(rng, SEEDS))


GIANTS = giants()


@pytest.mark.parametrize("name", sorted(GIANTS))
def test_giant_shapes_parse_within_the_bound(name: str) -> None:
    parsed = check(GIANTS[name])
    assert isinstance(parsed, Email), parsed
    expected_warning = {
        "10000_recipients": "header To longer than its limit: cut",
        "5mb_subject": "header Subject longer than its limit: cut",
        "5mb_folded_header": "header X-Big longer than its limit: cut",
        "5mb_content_type": "header Content-Type longer than its limit: cut",
        "1000_nested_multipart": "MIME structure nested too deeply: body not read",
        "1000_nested_rfc822": "MIME structure nested too deeply: body not read",
        "5000_parts": "more than 1000 MIME parts: the rest not read",
    }.get(name)
    if expected_warning is not None:
        assert expected_warning in parsed.warnings
    if name == "10000_recipients":
        assert 100 < len(parsed.to) < 10_000 and parsed.to[0].email == "user0@example.com"
    if name.endswith("html"):
        assert "deep text" in parsed.body or "hello" in parsed.body


def test_fixtures_of_odd_real_world_mail() -> None:
    """Each hand-collected shape gives what a reader of the mail would expect."""
    expected = {
        "bounce_dsn.eml": "could not\nbe delivered",
        "calendar_invite.eml": "invited to the quarterly review",
        "forwarded_inline.eml": "FYI, see below.",
        "header_only_no_body.eml": "",
        "html_preheader_hidden.eml": "Everything is 20% off this week.",
        "iso2022jp.eml": "請求書が届いていません",
        "lying_charset.eml": "Die Rechnung für März fehlt.",
        "missing_final_boundary.eml": "printer on floor 3",
        "mixed_line_endings.eml": "line one\nline two\nline three",
        "outlook_tnef.eml": "Angebot für die Wartung",
        "rfc2231_filename.eml": "See the attached contract.",
        "smime_signed.eml": "renew the contract",
        "uuencoded_body.eml": "Here is the scan",
    }
    found = {path.name: check(path.read_bytes()) for path in FIXTURES.glob("*.eml")}
    assert isinstance(found.pop("not_mail_pdf.eml"), Unparseable)
    assert sorted(found) == sorted(expected)
    for name, parsed in found.items():
        assert isinstance(parsed, Email) and expected[name] in parsed.body, (name, parsed)
    hidden = found["html_preheader_hidden.eml"]
    assert isinstance(hidden, Email) and "HIDDEN" not in hidden.body and "hidden text" not in hidden.body
    rfc2231 = found["rfc2231_filename.eml"]
    assert isinstance(rfc2231, Email) and rfc2231.attachments[0].filename == "Vertrag für Müller.pdf"
    tnef = found["outlook_tnef.eml"]
    assert isinstance(tnef, Email) and tnef.subject == "Angebot für Wartung"


E2E_MUTANTS = 80


@pytest.mark.integration
def test_every_hostile_message_ends_recorded(tmp_path: Path) -> None:
    """Mutants, giants and fixtures through a real backfill: one final row per message, exactly."""
    folder = tmp_path / "mail"
    folder.mkdir()
    rng = random.Random(20261106)
    messages = [mutated(rng, SEEDS) for _ in range(E2E_MUTANTS)]
    messages += list(GIANTS.values()) + [path.read_bytes() for path in sorted(FIXTURES.glob("*.eml"))]
    for index, raw in enumerate(messages):
        (folder / f"{index:04d}.eml").write_bytes(raw)
    unparseable = sum(isinstance(parse_email(raw, 4000), Unparseable) for raw in messages)
    db = tmp_path / "t.db"
    env = {"TRIAGE_STORE__URL": f"sqlite:///{db}"}
    with FakeRunServer(["ok"]) as server:
        env["TRIAGE_LANGGRAPH__URL"] = server.url
        started = time.monotonic()
        done = run_triage("backfill", "--source", str(folder), "--quiet", cwd=tmp_path, env=env, timeout=240)
        elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    result = outcomes(db)
    assert sorted(result) == list(range(1, len(messages) + 1))
    statuses = [status for status, _, _ in result.values()]
    assert statuses.count("unparseable") == unparseable
    assert statuses.count("ok") == len(messages) - unparseable
    assert elapsed < 120, f"{len(messages)} hostile messages took {elapsed:.0f} s"
