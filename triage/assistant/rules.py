"""Transparent offline rules over a rendered triage prompt (the default template's layout).

Only triage's own blocks are read: header lines inside <email-headers>, thread lines inside
<threads> and the labelled examples inside <examples>. Email content cannot fake those blocks because
rendering defuses block tags in it, and keeps each example's text on its own line, after its fields.
"""

from __future__ import annotations

import re
from email.utils import parseaddr
from typing import Any

from triage.message import list_key

_HEADERS = re.compile(r"^<email-headers>\n(.*?)^</email-headers>$", re.S | re.M)
_THREADS = re.compile(r"^<threads>\n(.*?)^</threads>$", re.S | re.M)
_THREAD_LINE = re.compile(r"^- id: (?P<id>\S+) \|(?P<rest>.*)$", re.M)
_EXAMPLES = re.compile(r"^<examples>\n(.*?)^</examples>$", re.S | re.M)
_EXAMPLE_LINE = re.compile(
    r"^- from: (?P<sender>\S+) \| list: (?P<list>\S+) \| decision: (?P<decision>[a-z-]+)"
    r"(?: \| thread: (?P<thread>\S+))? \| (?P<kind>correction|confirmation|filing)\b",
    re.M,
)
_BULK_PRECEDENCE = {"bulk", "list", "junk"}


def headers_of(prompt: str) -> dict[str, str]:
    match = _HEADERS.search(prompt)
    if match is None:
        return {}
    fields: dict[str, str] = {}
    for line in match.group(1).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()
    return fields


def proved_threads(prompt: str) -> list[str]:
    """Ids of offered threads the headers prove this email belongs to."""
    match = _THREADS.search(prompt)
    if match is None:
        return []
    return [m["id"] for m in _THREAD_LINE.finditer(match.group(1)) if "proved by headers: yes" in m["rest"]]


def offered_threads(prompt: str) -> list[str]:
    match = _THREADS.search(prompt)
    return [m["id"] for m in _THREAD_LINE.finditer(match.group(1))] if match else []


def _followed_example(prompt: str, headers: dict[str, str]) -> dict[str, Any] | None:
    """The decision of the first offered example from the same sender address or the same list.

    A person's label beats every heuristic below; an example naming a thread that is not offered
    now cannot be followed (the contract allows offered threads only).
    """
    match = _EXAMPLES.search(prompt)
    if match is None:
        return None
    sender = parseaddr(headers.get("from", ""))[1].lower()
    listed = list_key(headers.get("list-id"))
    for example in _EXAMPLE_LINE.finditer(match.group(1)):
        same_sender = sender and example["sender"] == sender
        if not (same_sender or (listed and example["list"] == listed)):
            continue
        decision, thread = example["decision"], example["thread"]
        if decision == "existing-thread" and thread not in offered_threads(prompt):
            continue
        who = f"sender {sender}" if same_sender else f"list {listed}"
        answer: dict[str, Any] = {
            "decision": decision,
            "reason": f"follows a {example['kind']} of earlier mail from the same {who}",
            "confidence": 0.9,
        }
        if decision == "existing-thread":
            answer["thread_id"] = thread
        if decision == "new-task":
            answer["title"] = (headers.get("subject") or "(no subject)")[:120]
        return answer
    return None


def decide(prompt: str) -> dict[str, Any]:
    """The decision contract's answer for a prompt, by rules a reader can check by hand."""
    headers = headers_of(prompt)
    if not headers:
        return {"decision": "ignore", "reason": "no email found in the prompt", "confidence": 0.2}
    followed = _followed_example(prompt, headers)
    if followed is not None:
        return followed
    auto = headers.get("auto-submitted", "").lower()
    if auto and auto != "no":
        return {
            "decision": "ignore",
            "reason": f"automatic message (Auto-Submitted: {auto})",
            "confidence": 0.95,
        }
    if headers.get("list-id") or headers.get("list-unsubscribe"):
        return {"decision": "ignore", "reason": "mailing-list or newsletter mail", "confidence": 0.9}
    if headers.get("precedence", "").lower() in _BULK_PRECEDENCE:
        return {"decision": "ignore", "reason": "bulk mail (Precedence header)", "confidence": 0.85}
    proved = proved_threads(prompt)
    if headers.get("in-reply-to") and proved:
        return {
            "decision": "existing-thread",
            "thread_id": proved[0],
            "reason": "a reply whose headers match an offered thread",
            "confidence": 0.95,
        }
    subject = headers.get("subject") or "(no subject)"
    reason = (
        "a reply to a conversation no offered thread covers"
        if headers.get("in-reply-to")
        else "a personal message that may need action"
    )
    return {"decision": "new-task", "title": subject[:120], "reason": reason, "confidence": 0.6}
