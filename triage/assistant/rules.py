"""Transparent offline rules over a rendered triage prompt (the default template's layout).

Only triage's own blocks are read: header lines inside <email-headers> and thread lines inside
<threads>. Email content cannot fake those blocks because rendering defuses block tags in it.
"""

from __future__ import annotations

import re
from typing import Any

_HEADERS = re.compile(r"^<email-headers>\n(.*?)^</email-headers>$", re.S | re.M)
_THREADS = re.compile(r"^<threads>\n(.*?)^</threads>$", re.S | re.M)
_THREAD_LINE = re.compile(r"^- id: (?P<id>\S+) \|(?P<rest>.*)$", re.M)
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


def decide(prompt: str) -> dict[str, Any]:
    """The decision contract's answer for a prompt, by rules a reader can check by hand."""
    headers = headers_of(prompt)
    if not headers:
        return {"decision": "ignore", "reason": "no email found in the prompt", "confidence": 0.2}
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
