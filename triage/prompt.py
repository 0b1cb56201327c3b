"""Render an Email into the assistant's prompt with a sandboxed Jinja template.

Email content is untrusted. Before it reaches the template every text field is neutralised:
invisible and direction-changing characters are removed or shown, anything that would open or
close one of the prompt's blocks is defused, and lines that imitate an answer are marked as quoted.
Jinja syntax inside an email is plain text: content is passed as data, never compiled.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from triage.errors import ConfigError
from triage.examples import Example
from triage.message import Email
from triage.threads import ThreadCandidate

_PACKAGE_DIR = Path(__file__).resolve().parent
# Installed wheels carry the template inside the package; a source checkout keeps it at the top.
_BUNDLED_TEMPLATES = (
    _PACKAGE_DIR / "prompts" / "triage.jinja",
    _PACKAGE_DIR.parent / "prompts" / "triage.jinja",
)

# Invisible: zero-width and joiners, invisible operators, the soft hyphen, and Unicode "tag"
# characters (U+E0000-E007F), which can spell out hidden ASCII instructions.
_ZERO_WIDTH = re.compile("[\u200b-\u200d\u2060-\u2064\ufeff\u00ad\u034f\u180e\U000e0000-\U000e007f]")
# Line breaks other than \n that a reader (or a model) may take for one.
_OTHER_LINE_BREAKS = re.compile("[\u2028\u2029\x85]")
_BIDI = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
_BLOCK_TAG = re.compile(r"<(\s*/?\s*(?:email|threads?|examples?|instructions)\b)", re.I)
# A look-alike of "<" that no parser of the prompt's blocks will take for a tag.
_DEFUSED_ANGLE = "\u2039"
_FAKE_ANSWER = re.compile(
    r"^([\s>]*)(decision|thread[_ ]?id|title|reason|confidence|answer)(\s*[:=])", re.I | re.M
)


def default_template_path() -> Path:
    for path in _BUNDLED_TEMPLATES:
        if path.exists():
            return path
    raise ConfigError("the bundled prompt template is missing from this installation")


# Anything one of the patterns above would change. Most text has none: one search then stands in
# for six substitutions. Where it finds nothing, no substitution changes the text, so none can make
# a later pattern match.
_NEEDS_NEUTRALISING = re.compile(
    "|".join(p.pattern for p in (_ZERO_WIDTH, _OTHER_LINE_BREAKS, _BIDI, _CONTROL, _BLOCK_TAG, _FAKE_ANSWER)),
    re.I | re.M,
)


def neutralise(text: str) -> str:
    """Make untrusted text safe to place inside a delimited prompt block."""
    if _NEEDS_NEUTRALISING.search(text) is None:
        return text
    text = _ZERO_WIDTH.sub("", text)
    text = _OTHER_LINE_BREAKS.sub("\n", text)
    text = _BIDI.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _BLOCK_TAG.sub(rf"{_DEFUSED_ANGLE}\1", text)
    return _FAKE_ANSWER.sub(r"\1(quoted) \2\3", text)


def _one_line(text: str) -> str:
    return " ".join(neutralise(text).split())


class PromptRenderer:
    """One compiled template; `template_hash` identifies it in the decision log."""

    def __init__(self, template_path: Path | None = None) -> None:
        path = template_path or default_template_path()
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read prompt template {path}: {exc.strerror}") from None
        self.template_path = path
        self.template_hash = hashlib.sha256(source.encode()).hexdigest()[:16]
        env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
        try:
            self._template = env.from_string(source)
        except TemplateError as exc:
            raise ConfigError(f"prompt template {path} is invalid: {exc}") from None

    def render(
        self,
        email: Email,
        *,
        account: str,
        mailbox: str,
        threads: list[ThreadCandidate],
        examples: list[Example] | None = None,
    ) -> str:
        try:
            return self._template.render(
                email=email_view(email),
                threads=[_thread_view(t) for t in threads],
                examples=[_example_view(e) for e in examples or ()],
                account=_one_line(account),
                mailbox=_one_line(mailbox),
            )
        except TemplateError as exc:
            raise ConfigError(f"prompt template {self.template_path} failed: {exc}") from None


def email_view(email: Email) -> dict[str, Any]:
    """What a template sees of an email: neutralised text, header values on one line."""
    return {
        "subject": _one_line(email.subject),
        "sender": _one_line(email.sender),
        "from": [_one_line(str(a)) for a in email.from_],
        "to": [_one_line(str(a)) for a in email.to],
        "cc": [_one_line(str(a)) for a in email.cc],
        "reply_to": [_one_line(str(a)) for a in email.reply_to],
        "date": email.date.isoformat() if email.date else "",
        "message_id": _one_line(email.message_id or ""),
        "in_reply_to": _one_line(email.in_reply_to or ""),
        "references": [_one_line(r) for r in email.references],
        "list_id": _one_line(email.list_id or ""),
        "list_unsubscribe": _one_line(email.list_unsubscribe or ""),
        "auto_submitted": _one_line(email.auto_submitted or ""),
        "precedence": _one_line(email.precedence or ""),
        "attachments": [
            {
                "filename": _one_line(a.filename or ""),
                "content_type": _one_line(a.content_type),
                "size": a.size,
            }
            for a in email.attachments
        ],
        "body": neutralise(email.body),
        "body_chars": email.body_chars,
        "quoted": neutralise(email.quoted),  # the quoted history apart from the body; "" when none
    }


def _thread_view(thread: ThreadCandidate) -> dict[str, Any]:
    return {
        "id": thread.id,
        "title": _one_line(thread.title),
        "last_activity": thread.last_activity.isoformat() if thread.last_activity else "",
        "proved_by_headers": thread.proved_by_headers,
    }


def _example_view(example: Example) -> dict[str, Any]:
    """A labelled past decision: from the store, but its text came in mail (or a person's note)."""
    return {
        "kind": example.kind,
        "sender": "".join(_one_line(example.sender).split()),
        "list_id": "".join(_one_line(example.list_id).split()),
        "subject": _one_line(example.subject),
        "excerpt": _one_line(example.excerpt),
        "decision": example.decision,
        "thread_id": "".join(_one_line(example.thread_id or "").split()),
        "was": example.was or "",
        "note": _one_line(example.note or ""),
    }
