"""Raw RFC 5322 bytes -> a typed Email. Never raises: defects become warnings."""

from __future__ import annotations

import email
import email.parser
import email.policy
import email.utils
import functools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message

from triage.quoted import is_forward, split_quoted

_MANY_BLANK_LINES = re.compile(r"\n\s*\n(\s*\n)+")
_MSG_ID = re.compile(r"<[^<>\s]+>")
_CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# The stdlib's modern header parser is quadratic in a header's length (a 5 MB Subject takes
# minutes) and re-parses on every read: header values are cut before it ever sees them. MIME
# headers are read several times per part, so their bound is tighter.
MAX_HEADER_CHARS = 16_384
MAX_MIME_HEADER_CHARS = 2_048
# BeautifulSoup takes about 3 s per MB of HTML; the prompt shows a few thousand characters.
MAX_HTML_CHARS = 300_000
# Parts listed (attachments, alternatives) before the rest of a message's tree is skipped.
MAX_PARTS = 1_000
# Parsed header values up to this length are kept for reuse (see _BoundedPolicy.header_fetch_parse).
_CACHED_HEADER_CHARS = 256
# How many: a parsed header keeps its parse tree (about 10 KB), and most reuse is of a message's
# own MIME headers, read many times while it is parsed. 1,024 held 10 MB of a backfill's memory.
_CACHED_HEADERS = 256


@dataclass(frozen=True, slots=True)
class Address:
    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str | None
    content_type: str
    size: int


@dataclass(slots=True)
class Email:
    subject: str
    from_: list[Address]
    to: list[Address]
    cc: list[Address]
    reply_to: list[Address]
    date: datetime | None
    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    list_id: str | None
    list_unsubscribe: str | None
    auto_submitted: str | None
    precedence: str | None
    body: str  # the new text when quoted history is set apart (prompt.strip_quoted), else the whole body
    body_chars: int  # the length of that text before truncation
    attachments: list[Attachment]
    warnings: list[str] = field(default_factory=list)
    quoted: str = ""  # what triage.quoted set apart from the body (the quoted history), truncated like it

    @property
    def sender(self) -> str:
        return str(self.from_[0]) if self.from_ else ""


@dataclass(frozen=True, slots=True)
class Unparseable:
    """Bytes that are not an email at all; still recorded, with the reason."""

    reason: str


_BASIC_HEADERS = ("from", "to", "subject", "date", "message-id")


class _BoundedPolicy(email.policy.EmailPolicy):
    """The default policy, with every header value cut to a bound as the parser reads it.

    `truncated` collects the names of the headers cut; each parse gets its own clone.
    """

    truncated: list[str] | None = None

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        name, value = super().header_source_parse(sourcelines)
        limit = MAX_MIME_HEADER_CHARS if name.lower().startswith("content-") else MAX_HEADER_CHARS
        if len(value) > limit:
            value = value[:limit]
            if self.truncated is not None:
                self.truncated.append(name)
        return name, value

    def header_fetch_parse(self, name: str, value: str) -> str:
        """Parsed headers are immutable: each distinct (name, value) is parsed once, not per read."""
        if hasattr(value, "name"):
            return value
        if len(value) > _CACHED_HEADER_CHARS:  # long values are rarely repeated, and costly to keep
            return super().header_fetch_parse(name, value)
        return _parsed_header(name, value)


_POLICY = _BoundedPolicy()


@functools.lru_cache(maxsize=_CACHED_HEADERS)
def _parsed_header(name: str, value: str) -> str:  # a headerregistry header: a str subclass
    # The stdlib re-parses a header on every read, and MIME headers are read many times per part;
    # Content-Type values repeat across messages too.
    return email.policy.EmailPolicy.header_fetch_parse(_POLICY, name, value)


def _parse_tree(raw: bytes, warnings: list[str]) -> Message:
    """The MIME tree; one nested too deep for the stdlib's recursive parser keeps its headers only."""
    truncated: list[str] = []
    policy = _POLICY.clone(truncated=truncated)  # type: ignore[call-arg]  # this subclass's own field
    try:
        msg = email.message_from_bytes(raw, policy=policy)
    except RecursionError:
        warnings.append("MIME structure nested too deeply: body not read")
        msg = email.parser.BytesParser(policy=policy).parsebytes(raw, headersonly=True)
        msg.set_payload("")
    warnings += [f"header {name} longer than its limit: cut" for name in sorted(set(truncated))]
    return msg


def parse_email(
    raw: bytes, max_body_chars: int, *, partial: str | None = None, strip_quoted: bool = False
) -> Email | Unparseable:
    """Parse raw bytes. Anything odd is kept as a warning; only non-mail is Unparseable.

    `partial` is the source's note on a message it fetched only part of (RawMessage.partial).
    `strip_quoted` sets the quoted history apart from the new text (triage.quoted): off unless
    asked, so that a parse keeps the body as sent; triage asks as `prompt.strip_quoted` says.
    """
    if not raw.strip():
        return Unparseable("empty message")
    warnings: list[str] = []
    try:
        msg = _parse_tree(raw, warnings)
    except Exception as exc:  # the stdlib parser is lenient; this is a last resort
        return Unparseable(f"parser failed: {type(exc).__name__}: {exc}")
    if not any(name in msg for name in _BASIC_HEADERS):
        return Unparseable("no email headers (From, To, Subject, Date or Message-ID)")
    warnings += [type(defect).__name__ for defect in msg.defects]
    if partial is not None:
        warnings.append(f"partial: {partial}")
    try:
        body, attachments = _body_and_attachments(msg, warnings)
    except RecursionError:
        warnings.append("MIME structure nested too deeply: body not read")
        body, attachments = "", []
    body = _MANY_BLANK_LINES.sub("\n\n", body.replace("\r\n", "\n").replace("\r", "\n")).strip()
    subject = _unstructured(msg, "subject", warnings)
    quoted = ""
    if strip_quoted and not is_forward(subject):
        body, quoted = split_quoted(body)
    first_id = _first(_message_ids(_unparsed(msg, "in-reply-to")))
    return Email(
        subject=subject,
        from_=_addresses(msg, "from", warnings),
        to=_addresses(msg, "to", warnings),
        cc=_addresses(msg, "cc", warnings),
        reply_to=_addresses(msg, "reply-to", warnings),
        date=_date(msg, warnings),
        message_id=_first(_message_ids(_unparsed(msg, "message-id"))),
        in_reply_to=first_id,
        references=_message_ids(_unparsed(msg, "references")),
        list_id=_header(msg, "list-id", warnings) or None,
        list_unsubscribe=_header(msg, "list-unsubscribe", warnings) or None,
        auto_submitted=_header(msg, "auto-submitted", warnings) or None,
        precedence=_header(msg, "precedence", warnings) or None,
        body=truncate(body, max_body_chars),
        body_chars=len(body),
        attachments=attachments,
        warnings=sorted(set(warnings)),
        quoted=truncate(quoted, max_body_chars),
    )


def truncate(text: str, limit: int) -> str:
    """Keep the head and the tail (signatures and sign-offs matter too), with a visible marker."""
    if len(text) <= limit:
        return text
    marker = f"\n[... {len(text) - limit} characters omitted ...]\n"
    head = (limit * 2) // 3
    tail = limit - head
    return text[:head] + marker + text[-tail:]


def list_key(list_id: str | None) -> str:
    """A List-Id's identifying part (`<id>` when bracketed), lower-case, without spaces."""
    if not list_id:
        return ""
    inside = list_id[list_id.rfind("<") + 1 : list_id.rfind(">")] if "<" in list_id else list_id
    return "".join(inside.split()).lower()


def _first(items: list[str]) -> str | None:
    return items[0] if items else None


def _message_ids(value: str) -> list[str]:
    found = _MSG_ID.findall(value)
    if not found and value.strip():
        return [value.strip()]
    return found


def _header(msg: Message, name: str, warnings: list[str]) -> str:
    """A header as one line of text, decoded; falls back to a raw decode if the parser chokes."""
    try:
        value = msg.get(name)
    except Exception as exc:
        warnings.append(f"header {name}: {type(exc).__name__}")
        value = _raw_header(msg, name)
    if value is None:
        return ""
    return " ".join(str(value).split())


def _unstructured(msg: Message, name: str, warnings: list[str]) -> str:
    """A free-text header: plain ASCII with no encoded word is its own decoding, and the common case."""
    text = _raw_value(msg, name)
    if text is not None and text.isascii() and "=?" not in text and text.isprintable():
        return " ".join(text.split())
    return _header(msg, name, warnings)


def _unparsed(msg: Message, name: str) -> str:
    """A header's text as it arrived, on one line: for the ids and the date, which are read here.

    The stdlib's parse of those headers (and its re-formatting of the date) cost more than every
    other header together, and its result was only read back as text. Bytes that are not UTF-8
    become U+FFFD, and control characters, which no id or date holds, are dropped.
    """
    text = _raw_value(msg, name)
    if text is None:
        return ""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return " ".join(_CONTROL_CHARS.sub("", text).split())


def _raw_header(msg: Message, name: str) -> str:
    text = _raw_value(msg, name)
    if text is None:
        return ""
    try:
        return str(make_header(decode_header(text)))
    except Exception:
        return text


def _raw_value(msg: Message, name: str) -> str | None:
    """The first `name` header's value as the parser stored it (cut to its bound, not decoded)."""
    for key, value in msg.raw_items():
        if key.lower() == name:
            return str(value)
    return None


def _addresses(msg: Message, name: str, warnings: list[str]) -> list[Address]:
    text = _header(msg, name, warnings)
    if not text:
        return []
    try:
        pairs = email.utils.getaddresses([text])
    except Exception:
        warnings.append(f"header {name}: unparsable addresses")
        return [Address(name="", email=text)]
    return [Address(name=n.strip(), email=a.strip()) for n, a in pairs if a or n]


def _date(msg: Message, warnings: list[str]) -> datetime | None:
    text = _unparsed(msg, "date")
    if not text:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        warnings.append("header date: unparsable")
        return None
    if parsed.tzinfo is None:
        warnings.append("header date: no timezone, assumed UTC")
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _body_and_attachments(msg: Message, warnings: list[str]) -> tuple[str, list[Attachment]]:
    plain: str | None = None
    html: str | None = None
    attachments: list[Attachment] = []
    for index, part in enumerate(msg.walk()):
        if index == MAX_PARTS:
            warnings.append(f"more than {MAX_PARTS} MIME parts: the rest not read")
            break
        if part.is_multipart():
            continue
        content_type = part.get_content_type()
        filename, disposition = _disposition(part, warnings)
        is_attachment = disposition == "attachment" or (
            filename is not None and not content_type.startswith("text/")
        )
        if is_attachment or not content_type.startswith("text/"):
            payload = _payload_bytes(part, warnings)
            attachments.append(Attachment(filename, content_type, len(payload)))
        elif content_type == "text/html" and html is None:
            html = _part_text(part, warnings)
        elif content_type != "text/html" and plain is None:
            plain = _part_text(part, warnings)
    if plain is not None and plain.strip():
        return plain, attachments
    if html is not None:
        return html_to_text(html), attachments
    return plain or "", attachments


def _disposition(part: Message, warnings: list[str]) -> tuple[str | None, str | None]:
    """The part's file name and disposition: the stdlib raises on some Content-Disposition values."""
    try:
        return part.get_filename(), part.get_content_disposition()
    except Exception:
        warnings.append("attachment filename: unparsable")
        return None, None


def _payload_bytes(part: Message, warnings: list[str]) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception as exc:
        warnings.append(f"payload: {type(exc).__name__}")
        return b""
    if isinstance(payload, bytes):
        return payload
    return str(part.get_payload()).encode("utf-8", "replace")


def _part_text(part: Message, warnings: list[str]) -> str:
    """Decode a text part by its declared charset; an unknown or lying charset still gives text."""
    payload = _payload_bytes(part, warnings)
    charset = part.get_content_charset() or "utf-8"
    try:
        text = payload.decode(charset, errors="replace")
    except (LookupError, UnicodeError, ValueError):  # unknown, not a text codec, or one that refuses
        warnings.append(f"unknown charset {charset!r}")
        return payload.decode("utf-8", errors="replace")
    if "\ufffd" in text:
        return _undeclared_text(payload, charset, warnings) or text
    return text


def _undeclared_text(payload: bytes, charset: str, warnings: list[str]) -> str | None:
    """Text whose declared charset is a lie (8-bit bytes "in us-ascii"): UTF-8, else Windows-1252."""
    for guess in ("utf-8", "cp1252"):
        try:
            text = payload.decode(guess)
        except UnicodeDecodeError:
            continue
        warnings.append(f"charset {charset!r} does not fit the text: read as {guess}")
        return text
    return None


def html_to_text(html: str) -> str:
    """Readable text of an HTML body, without scripts, styles, comments or hidden elements.

    A body longer than MAX_HTML_CHARS keeps its head and tail (the parser is slow on megabytes);
    a tree too deep to walk is replaced by a notice.
    """
    if len(html) > MAX_HTML_CHARS:
        html = html[: MAX_HTML_CHARS * 2 // 3] + "\n[...]\n" + html[-(MAX_HTML_CHARS // 3) :]
    from triage.html_text import visible_text  # BeautifulSoup loads in 0.1 s: only for HTML mail

    try:
        return visible_text(html)
    except RecursionError:  # never fall back to a tag-stripping guess: hidden text would show
        return "[HTML body nested too deeply to read]"
