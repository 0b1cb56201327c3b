"""`triage web` over HTTP, in this process (Starlette's TestClient): what each page shows beside what
the command line prints for the same log, and the guard in front of them: security headers, CSRF,
read-only, the token, the Host check, and refusing to listen off this machine without a token."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from starlette.testclient import TestClient

from tests.support.inprocess import triage
from tests.support.web_log import THREAD_ID, fill, fill_review_log, many, prompt_of
from triage.log.explain import explain
from triage.store.decisions import Store
from triage.web.app import create_app
from triage.web.charts import Series, nice_top, stacked_bars
from triage.web.server import check_bind

pytestmark = pytest.mark.usefixtures("clean_triage_env")

Capsys = pytest.CaptureFixture[str]
LOCAL = "http://127.0.0.1:8080"
PAGES = ("/", "/decisions/2", "/review", "/review?all=1", "/stats", "/threads", f"/threads/{THREAD_ID}")


@pytest.fixture
def logged(store: Store, db: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """The review log (decisions 1-6); TRIAGE_STORE__URL names it for the command line."""
    fill_review_log(store)
    monkeypatch.setenv("TRIAGE_STORE__URL", f"sqlite:///{db}")
    return store


@pytest.fixture
def client(logged: Store) -> Iterator[TestClient]:
    with TestClient(create_app(logged), base_url=LOCAL) as opened:
        yield opened


def csrf_token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page offers no form"
    return found.group(1)


def text_of(page: str) -> str:
    """The page's text as a reader sees it, whitespace collapsed."""
    parts: list[str] = []

    class Text(HTMLParser):
        def handle_data(self, data: str) -> None:
            parts.append(data)

    Text().feed(page)
    return " ".join(" ".join(parts).split())


def page_time(iso: str) -> str:
    """A time as the pages show it."""
    return f"{datetime.fromisoformat(iso):%Y-%m-%d %H:%M:%S} UTC"


def corrections(store: Store, decision_id: int) -> list[dict[str, object]]:
    return explain(store, decision_id)["corrections"]


# --- what the pages show -----------------------------------------------------------------------


def test_every_page_answers_and_carries_the_security_headers(client: TestClient) -> None:
    for path in (*PAGES, "/healthz", "/decisions/1/prompt", "/static/style.css", "/no-such-page"):
        response = client.get(path)
        assert response.status_code == (404 if path == "/no-such-page" else 200), path
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "img-src 'self'" in policy and "script-src 'self'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


def test_pages_have_no_inline_script_style_or_outside_address(client: TestClient) -> None:
    """What the CSP would block must not be needed: the pages work under it as they are."""
    for path in PAGES:
        page = client.get(path).text
        assert re.findall(r"<script\b[^>]*>", page) == ['<script src="/static/keys.js" defer>'], path
        assert not re.search(r"\son[a-z]+\s*=", page), path
        assert not re.search(r"\sstyle\s*=", page) and "<style" not in page, path
        assert not re.search(r"(href|src|action)=\"(?!/)", page), path


def test_the_log_is_newest_first_and_pages_through_older_decisions(store: Store) -> None:
    fill(store, many(120, word="walrus"))
    with TestClient(create_app(store), base_url=LOCAL) as client:
        seen: list[int] = []
        path: str | None = "/?q=walrus"
        while path:
            page = client.get(path).text
            ids = [int(i) for i in re.findall(r'<td class="num"><a href="/decisions/(\d+)">', page)]
            assert ids == sorted(ids, reverse=True) and len(ids) <= 50
            seen += ids
            older = re.search(r'<a href="([^"]+)" rel="next">', page)
            path = unescape(older.group(1)) if older else None
    assert seen == list(range(120, 0, -1))


def test_filters_narrow_the_log_as_triage_log_does(client: TestClient, capsys: Capsys) -> None:
    for query, options in (
        ("q=walrus", ["-q", "walrus"]),
        ("status=needs-review", ["--status", "needs-review"]),
        ("decision=ignore", ["--decision", "ignore"]),
        ("mailbox=INBOX&since=7d", ["--mailbox", "INBOX", "--since", "7d"]),
        ("mailbox=Elsewhere", ["--mailbox", "Elsewhere"]),
    ):
        page = client.get(f"/?{query}").text
        shown = [int(i) for i in re.findall(r'<td class="num"><a href="/decisions/(\d+)">', page)]
        printed = [json.loads(line)["id"] for line in triage(capsys, "log", "--json", *options).out_lines]
        assert shown == printed, query
    assert client.get("/?q=walrus").text.count("/decisions/") < client.get("/").text.count("/decisions/")


def test_a_bad_filter_is_a_400_saying_why(client: TestClient) -> None:
    for query, said in (
        ("status=bogus", "status must be one of"),
        ("since=soon", "not a date"),
        ("q=*", "nothing to search"),
    ):
        response = client.get(f"/?{query}")
        assert response.status_code == 400 and said in response.text, query


def test_a_decision_page_shows_what_triage_show_prints(client: TestClient, capsys: Capsys) -> None:
    for decision_id in (1, 2, 4, 6):
        shown = triage(capsys, "show", str(decision_id))
        page = text_of(client.get(f"/decisions/{decision_id}").text)
        for line in shown.out.split("--- request metadata ---")[0].splitlines()[1:]:
            name, value = line[:15].strip(), " ".join(line[16:].split())  # as `show` lays them out
            if name == "routing" and value != "none recorded":  # one JSON object; the page lists it
                for key, field in json.loads(value).items():
                    shown = page_time(field) if key == "routed_at" else str(field)
                    assert field in (None, 0) or isinstance(field, dict) or (key in page and shown in page)
            elif name in ("claimed at", "updated at"):  # the page gives times to the second
                assert page_time(value) in page
            else:
                assert value in page, f"decision {decision_id}: {line!r}"
        assert " ".join(prompt_of(decision_id).split()) in page


def test_the_prompt_is_there_exactly_as_sent(client: TestClient, capsys: Capsys) -> None:
    response = client.get("/decisions/2/prompt")
    assert response.text == prompt_of(2) == triage(capsys, "show", "2", "--prompt").out
    assert response.headers["content-type"].startswith("text/plain")
    block = re.search(
        r'<pre class="mail prompt" id="prompt-text">(.*?)</pre>', client.get("/decisions/2").text, re.S
    )
    assert block and unescape(block.group(1)) == prompt_of(2)


def test_a_message_id_leads_to_its_decision_and_an_unknown_one_is_404(client: TestClient) -> None:
    response = client.get("/decisions/%3Cweb-3@example.test%3E", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/decisions/3"
    assert client.get("/decisions/99").status_code == 404


def test_stats_shows_the_figures_of_triage_stats_and_five_charts(client: TestClient, capsys: Capsys) -> None:
    report = json.loads(triage(capsys, "stats", "--json").out)
    page = client.get("/stats").text
    assert page.count("<svg") == 5 and page.count('class="bar s-') >= 3 and "<polyline" in page
    summary = text_of(re.search(r'<p class="summary" id="summary">(.*?)</p>', page, re.S).group(1))
    total = report["total"]
    assert f"{total['total']} decisions from {total['first_day']} to {total['last_day']}" in summary
    assert f"needs review {total['needs_review_rate'] * 100:.1f} %" in summary
    for period in report["periods"]:
        assert period["period"] in page
    assert client.get("/stats?by=week").status_code == 200


def test_the_threads_page_lists_the_registry_and_a_thread_its_messages(
    client: TestClient, capsys: Capsys
) -> None:
    listed = triage(capsys, "threads").out_lines
    page = text_of(client.get("/threads").text)
    assert len(listed) == 1 and THREAD_ID in page and "Export fails" in page
    thread = client.get(f"/threads/{THREAD_ID}").text
    assert re.findall(r'<td class="num"><a href="/decisions/(\d+)">', thread) == ["2"]
    assert '<p class="starter"><a href="/decisions/1">decision 1</a>' in thread
    assert client.get("/threads/no-such-thread").status_code == 404


def test_healthz_says_whether_the_store_answers(client: TestClient, tmp_path: Path) -> None:
    assert client.get("/healthz").text == "ok"
    gone = Store(create_engine(f"sqlite:///{tmp_path}/missing/folder/triage.db"))
    with TestClient(create_app(gone), base_url=LOCAL) as broken:
        assert broken.get("/healthz").status_code == 503


# --- corrections and the review queue ----------------------------------------------------------


def test_a_correction_through_the_form_is_what_triage_correct_records(
    client: TestClient, logged: Store, capsys: Capsys
) -> None:
    token = csrf_token(client.get("/decisions/3").text)
    form = {"decision": "existing-thread", "thread_id": THREAD_ID, "note": "same export", "author": "ana"}
    response = client.post(
        "/decisions/3/corrections", data={**form, "csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"] == "/decisions/3"
    assert (
        triage(
            capsys,
            "correct",
            "6",
            "--decision",
            "existing-thread",
            "--thread",
            THREAD_ID,
            "--note",
            "same export",
            "--author",
            "ana",
        ).status
        == 0
    )
    by_web, by_cli = corrections(logged, 3)[-1], corrections(logged, 6)[-1]
    for key in ("decision", "thread_id", "note", "author"):
        assert by_web[key] == by_cli[key]
    rows = [json.loads(line) for line in triage(capsys, "log", "--corrected", "--json").out_lines]
    assert {row["id"]: row["corrected_decision"] for row in rows} == {
        3: "existing-thread",
        6: "existing-thread",
    }


def test_a_refused_correction_shows_why_and_records_nothing(client: TestClient, logged: Store) -> None:
    token = csrf_token(client.get("/decisions/3").text)
    for form, said in (
        ({"decision": "existing-thread"}, "needs --thread"),
        ({"decision": "ignore", "thread_id": "t-1"}, "belongs to no thread"),
        ({"decision": "maybe"}, "unknown decision"),
    ):
        response = client.post("/decisions/3/corrections", data={**form, "csrf_token": token})
        assert response.status_code == 400 and said in response.text
    assert corrections(logged, 3) == []
    assert (
        client.post("/decisions/99/corrections", data={"decision": "ignore", "csrf_token": token}).status_code
        == 404
    )


def test_a_post_without_the_sessions_csrf_token_is_403_and_changes_nothing(
    client: TestClient, logged: Store
) -> None:
    other = TestClient(create_app(logged), base_url=LOCAL)
    others_token = csrf_token(other.get("/decisions/3").text)  # another session's token
    for data in ({}, {"csrf_token": ""}, {"csrf_token": "forged"}, {"csrf_token": others_token}):
        response = client.post("/decisions/3/corrections", data={"decision": "ignore", **data})
        assert response.status_code == 403
    assert corrections(logged, 3) == []


def test_the_review_queue_walks_needs_review_as_triage_review_does(client: TestClient, logged: Store) -> None:
    page = client.get("/review").text
    assert (
        'data-decision="5"' in page and "2 waiting" in page and 'data-key="a"' not in page
    )  # nothing to accept
    token = csrf_token(page)
    done = re.search(r'name="next" value="([^"]+)"', page).group(1)
    response = client.post(
        "/decisions/5/corrections",
        data={"decision": "ignore", "next": unescape(done), "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    page = client.get(response.headers["location"]).text
    assert 'data-decision="4"' in page and "Recorded a correction of" in page
    skipped = client.get(unescape(re.search(r'<a href="([^"]+)" data-key="s"', page).group(1))).text
    assert 'id="queue-empty"' in skipped
    everything = client.get("/review?all=1").text
    assert 'data-decision="6"' in everything
    accept = client.get("/review?all=1&before=4").text  # decision 3: ignore, accepted as it stands
    assert 'data-decision="3"' in accept and 'data-key="a"' in accept
    accept_form = re.search(r'<form[^>]*data-key="a">(.*?)</form>', accept, re.S).group(1)
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', accept_form))
    client.post("/decisions/3/corrections", data={name: unescape(v) for name, v in fields.items()})
    assert [(c["kind"], c["decision"], c["note"]) for c in corrections(logged, 3)] == [
        ("confirmation", "ignore", None)
    ]


def test_a_confirmation_through_the_form_is_what_triage_correct_confirm_records(
    client: TestClient, logged: Store, capsys: Capsys
) -> None:
    token = csrf_token(client.get("/decisions/2").text)
    response = client.post(
        "/decisions/2/corrections", data={"confirm": "1", "note": "right", "csrf_token": token}
    )
    assert response.status_code == 200 and response.url.path == "/decisions/2"
    assert triage(capsys, "correct", "1", "--confirm", "--note", "right", "--author", "web").status == 0
    by_web, by_cli = corrections(logged, 2)[-1], corrections(logged, 1)[-1]
    assert (by_web["kind"], by_web["decision"], by_web["thread_id"]) == (
        "confirmation",
        "existing-thread",
        THREAD_ID,
    )
    assert by_cli["kind"] == "confirmation" and by_cli["note"] == by_web["note"] == "right"
    refused = client.post("/decisions/5/corrections", data={"confirm": "1", "csrf_token": token})
    assert refused.status_code == 400 and "no decision to confirm" in refused.text
    mixed = client.post(
        "/decisions/3/corrections", data={"confirm": "1", "decision": "ignore", "csrf_token": token}
    )
    assert mixed.status_code == 400 and corrections(logged, 3) == corrections(logged, 5) == []


# --- the guard ---------------------------------------------------------------------------------


def test_read_only_hides_the_forms_and_refuses_every_post(logged: Store) -> None:
    with TestClient(create_app(logged, read_only=True), base_url=LOCAL) as client:
        for path in PAGES:
            page = client.get(path).text
            assert 'method="post"' not in page and "read-only" in page, path
        for path in ("/decisions/3/corrections", "/", "/review"):  # refused before any form is read
            response = client.post(path, data={"decision": "ignore", "csrf_token": "any"})
            assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD", path
    assert corrections(logged, 3) == []


def test_with_a_token_every_request_carries_it(logged: Store) -> None:
    with TestClient(create_app(logged, token="s3cret-token"), base_url="http://triage.example.org") as client:
        for path in ("/", "/decisions/1", "/decisions/1/prompt", "/stats"):
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 303 and response.headers["location"].startswith("/login?next=")
        assert client.get("/", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/", headers={"authorization": "Bearer s3cret-token"}).status_code == 200
        assert client.get("/healthz").status_code == 200 and client.get("/static/keys.js").status_code == 200
        login = client.get("/login?next=/stats").text
        token = csrf_token(login)
        refused = client.post("/login", data={"token": "guess", "next": "/stats", "csrf_token": token})
        assert refused.status_code == 401 and client.get("/", follow_redirects=False).status_code == 303
        signed_in = client.post(
            "/login",
            data={"token": "s3cret-token", "next": "/stats", "csrf_token": token},
            follow_redirects=False,
        )
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/stats"
        assert (
            "HttpOnly" in signed_in.headers["set-cookie"]
            and "SameSite=Strict" in signed_in.headers["set-cookie"]
        )
        assert client.get("/").status_code == 200
        page = client.get("/decisions/3").text
        assert csrf_token(page) != token  # signing in started a new session
        client.post("/logout", data={"csrf_token": csrf_token(page)})
        assert client.get("/", follow_redirects=False).status_code == 303


def test_after_signing_in_only_a_local_page_is_a_destination(logged: Store) -> None:
    with TestClient(create_app(logged, token="s3cret-token"), base_url=LOCAL) as client:
        token = csrf_token(client.get("/login").text)
        for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "/\t/evil.example"):
            response = client.post(
                "/login",
                data={"token": "s3cret-token", "next": target, "csrf_token": token},
                follow_redirects=False,
            )
            assert response.headers["location"] == "/"
            token = csrf_token(client.get("/login").text)


def test_without_a_token_only_requests_addressed_to_this_machine_are_answered(logged: Store) -> None:
    """A page elsewhere whose name was rebound to 127.0.0.1 (DNS rebinding) cannot read the log."""
    app = create_app(logged)
    for base, status in (
        ("http://evil.example", 421),
        ("http://localhost:8080", 200),
        ("http://[::1]:8080", 200),
    ):
        assert TestClient(app, base_url=base).get("/").status_code == status, base


def test_the_web_token_is_masked_like_every_secret(monkeypatch: pytest.MonkeyPatch, capsys: Capsys) -> None:
    monkeypatch.setenv("TRIAGE_WEB__TOKEN", "tok-secret-xyz")
    shown = triage(capsys, "config")
    assert shown.status == 0 and "tok-secret-xyz" not in shown.out and "********" in shown.out


def test_listening_off_this_machine_without_a_token_is_refused_before_listening(capsys: Capsys) -> None:
    refused = triage(capsys, "web", "--host", "0.0.0.0", "--port", "0")  # returns: nothing was served
    assert (
        refused.status == 2
        and len(refused.err_lines) == 1
        and "web.token" in refused.err
        and refused.out == ""
    )
    check_bind("0.0.0.0", "a-token")
    check_bind("::1", None)


# --- charts ------------------------------------------------------------------------------------


def test_charts_scale_to_a_readable_top_and_escape_their_labels() -> None:
    assert [nice_top(v) for v in (0, 3, 7, 15, 35_000, 0.667)] == [1, 4, 10, 20, 40_000, 1]
    chart = stacked_bars("<b>title</b>", ["<script>x</script>"], [Series("new-task", [2])])
    assert "<script>" not in chart and "&lt;script&gt;" in chart and "<b>" not in chart
