"""Decision logs for the web pages' tests, written through the store as triage writes them.

`fill_review_log` makes a small log with one of everything a page shows: a new task that starts a
thread, a reply routed into it (with its routing outcome), an ignored list mail, needs-review
decisions for the queue, an error, spread over three days. `fill_hostile_log` records mail built to
attack a page: script tags, `javascript:` links, remote images, CSS and bidi tricks, in subjects,
senders, bodies, model answers and thread titles.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from unittest import mock

from tests.support.hostile_mail import seeds
from triage.message import Email, parse_email
from triage.sources import RawMessage
from triage.store import routing_log
from triage.store.decisions import Claim, Outcome, Store
from triage.store.thread_registry import ThreadAssignment

THREAD_ID = "thread-export-1"
# Characters a page must keep exactly: markup, an ampersand, a tab and trailing spaces.
PROMPT_TAIL = "Answer <b>only</b> with JSON & nothing else.\t \n"


@dataclass(frozen=True, slots=True)
class Logged:
    """One message and what triage decided about it."""

    subject: str
    sender: str
    body: str
    outcome: Outcome
    starts_thread: str | None = None  # the title of the thread this message starts
    routing: dict[str, object] = field(default_factory=dict)  # routing_log.record's arguments
    days_ago: int = 0
    prompt: str | None = None  # default: prompt_of(uid)
    template: str = "hash-1"


REVIEW_LOG: tuple[Logged, ...] = (
    Logged(
        "Export fails on Mondays",
        "Ana Lima <ana@customer.example>",
        "The zebrafish export fails every Monday morning.",
        Outcome(
            "ok", "new-task", title="Export fails", reason="a new problem", confidence=0.9, latency_ms=120
        ),
        starts_thread="Export fails",
        days_ago=2,
    ),
    Logged(
        "Re: Export fails on Mondays",
        "Ana Lima <ana@customer.example>",
        "It failed again today, see the attached log.",
        Outcome(
            "ok", "existing-thread", thread_id=THREAD_ID, reason="a reply", confidence=0.8, latency_ms=150
        ),
        routing={"status": "done", "thread_id": THREAD_ID, "run_id": "run-42", "actions": {"flag": "$Task"}},
        days_ago=1,
    ),
    Logged(
        "Weekly digest",
        "news@list.example",
        "Ten links you missed this week.",
        Outcome("ok", "ignore", reason="a mailing list", confidence=0.95, latency_ms=80),
        days_ago=1,
    ),
    Logged(
        "Something odd",
        "bo@customer.example",
        "Is the invoice for the walrus seats correct?",
        Outcome("needs-review", "maybe", problem="unknown decision 'maybe'", attempts=1, latency_ms=300),
    ),
    Logged(
        "Refund please",
        "cy@customer.example",
        "I would like a refund for the walrus seats.",
        Outcome("needs-review", problem="no answer", attempts=1, latency_ms=900),
    ),
    Logged(
        "Server said no",
        "di@customer.example",
        "Hello, is anyone there?",
        Outcome("error", error_kind="http", error_text="HTTP 500", attempts=4),
    ),
)


def prompt_of(uid: int) -> str:
    """The prompt recorded for the message with this uid."""
    return f"You triage email.\n<email>\nmessage {uid}\n</email>\n{PROMPT_TAIL}"


@contextmanager
def _clock_at(when: datetime) -> Iterator[None]:
    with mock.patch("triage.store.decisions.utc_now", return_value=when):
        yield


def record(store: Store, uid: int, logged: Logged, *, account: str = "acct", mailbox: str = "INBOX") -> int:
    """Record one message's decision as the pipeline does; its decision id."""
    mail = (
        f"From: {logged.sender}\r\nTo: support@example.com\r\nSubject: {logged.subject}\r\n"
        f"Message-ID: <web-{uid}@example.test>\r\nDate: Tue, 03 Nov 2026 09:00:00 +0000\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{logged.body}\r\n"
    )
    raw = RawMessage(account, mailbox, 7, uid, mail.encode())
    email = parse_email(raw.raw, 4000)
    assert isinstance(email, Email)
    when = datetime.now(UTC).replace(hour=12) - timedelta(days=logged.days_ago)
    with _clock_at(when):
        prompt = prompt_of(uid) if logged.prompt is None else logged.prompt
        claimed = store.claim(raw, email, Claim(prompt, logged.template, "agent", {"uid": uid}))
        assert claimed is not None
        thread = None
        if logged.starts_thread is not None:
            thread = (email, ThreadAssignment(THREAD_ID, email.message_id, logged.starts_thread))
        elif logged.outcome.thread_id is not None:
            thread = (email, ThreadAssignment(logged.outcome.thread_id, email.message_id))
        raw_response = {"decision": logged.outcome.decision, "reason": logged.outcome.reason}
        outcome = Outcome(**{**_fields(logged.outcome), "raw_response": raw_response})
        assert store.record(claimed, outcome, thread=thread)
    if logged.routing:
        routing = dict(logged.routing)
        routing_log.record(store, claimed.decision_pk, str(routing.pop("status")), **routing)  # type: ignore[arg-type]
    return claimed.decision_pk


def _fields(outcome: Outcome) -> dict[str, object]:
    return {name: getattr(outcome, name) for name in outcome.__dataclass_fields__}


def fill(store: Store, logged: tuple[Logged, ...] | list[Logged], first_uid: int = 1) -> list[int]:
    """Record each in order (decision ids follow): their decision ids."""
    return [record(store, uid, one) for uid, one in enumerate(logged, first_uid)]


def fill_review_log(store: Store) -> list[int]:
    return fill(store, REVIEW_LOG)


def many(count: int, word: str = "routine") -> list[Logged]:
    """`count` ordinary ignored mails, numbered in their subjects."""
    return [
        Logged(f"Note {n:04d}", f"n{n}@example.com", f"A {word} note.", Outcome("ok", "ignore", reason="r"))
        for n in range(1, count + 1)
    ]


# Marks a hostile page would leave if any of its script ran.
PWNED = "__triage_pwned"


def hostile(outside: str) -> list[Logged]:
    """Mail and answers built to run script, load from `outside` (a URL off this machine), restyle
    the page or disguise text: in subjects, senders, bodies, titles, reasons, problems, templates."""
    run = f"window.{PWNED}=1"
    tags = (
        f"<script>{run};fetch('{outside}/script')</script>"
        f'<img src="{outside}/img.gif" onerror="{run}">'
        f'<a href="javascript:{run}">click me</a>'
        f"<style>@import url({outside}/import.css); body {{ display: none }}</style>"
        f'<link rel=stylesheet href="{outside}/link.css">'
        f'<iframe src="{outside}/frame"></iframe>'
        f'<meta http-equiv="refresh" content="0;url={outside}/refresh">'
        f'<svg onload="{run}"><image href="{outside}/svg.png"/></svg>'
        f'<div style="background:url({outside}/bg.png)">styled</div>'
        f'<object data="{outside}/object"></object><video poster="{outside}/poster.png"></video>'
    )
    bidi = "invoice \u202egnp.exe\u202c with zero\u200bwidth"
    return [
        Logged(
            f"<script>{run}</script> Subject {n}",
            f'"<img src={outside}/from.gif onerror={run}>" <evil{n}@attacker.example>',
            f"{tags}\njavascript:{run}\n{outside}/plain-link\n{bidi}",
            Outcome(
                status,
                decision,
                title=f'<b onmouseover="{run}">{tags}</b>',
                reason=f"<img src={outside}/reason.gif> {bidi}",
                problem=f"<script>{run}</script>" if status != "ok" else None,
                latency_ms=100 + n,
            ),
            starts_thread=f"<iframe src={outside}/thread></iframe>" if n == 1 else None,
            prompt=f"<email>{tags}</email>{bidi}",
            template=f"<svg onload={run}>"[:64],
        )
        for n, (status, decision) in enumerate(
            (("ok", "new-task"), ("needs-review", None), ("ok", "ignore"), ("error", None)), 1
        )
    ]


def fill_hostile_log(store: Store, outside: str) -> list[int]:
    """The hostile mail above, then every seed of the hardening suite (its HTML newsletter with
    script and a remote pixel, broken MIME, lying charsets...), each with its raw text as its prompt."""
    ids = fill(store, hostile(outside))
    for uid, raw_bytes in enumerate(seeds(), len(ids) + 1):
        raw = RawMessage("acct", "Hostile", 7, uid, raw_bytes)
        email = parse_email(raw.raw, 4000)
        if not isinstance(email, Email):
            assert store.record_unparseable(raw, "not an email")
            continue
        text = raw_bytes.decode("utf-8", errors="replace")
        claimed = store.claim(raw, email, Claim(text, "hash-seed", "agent", {}))
        assert claimed is not None
        answer = {"messages": [{"type": "ai", "content": text[:2000]}]}
        assert store.record(claimed, Outcome("needs-review", problem=text[:200], raw_response=answer))
        ids.append(claimed.decision_pk)
    return ids
