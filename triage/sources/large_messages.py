"""A message too large to load whole: where its first text part is, and a small message standing in
for it (its headers and that part), so it is triaged without its attachments crossing the wire."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# Replaced in a partially fetched message by those of the text part that stands in for its body.
_MIME_HEADERS = (b"content-type", b"content-transfer-encoding")


@dataclass(frozen=True, slots=True)
class TextPart:
    """Where the first text part of a message is (an IMAP section number) and how it is encoded."""

    section: str
    content_type: str
    charset: str
    encoding: str


def first_text_part(structure: Any, prefix: str = "") -> TextPart | None:
    """The first text/plain part of a BODYSTRUCTURE, else the first text/html; attached mail is
    not entered."""
    found = list(_text_parts(structure, prefix))
    plain = [part for part in found if part.content_type == "text/plain"]
    return plain[0] if plain else found[0] if found else None


def _text_parts(structure: Any, prefix: str) -> Iterator[TextPart]:
    if isinstance(structure[0], list):
        for number, sub in enumerate(structure[0], 1):
            yield from _text_parts(sub, f"{prefix}{number}.")
        return
    kind = f"{_atom(structure[0])}/{_atom(structure[1])}".lower()
    if kind in ("text/plain", "text/html"):
        params = [_atom(value) for value in structure[2] or ()]
        named = dict(zip((key.lower() for key in params[::2]), params[1::2], strict=False))
        charset = named.get("charset", "")
        yield TextPart(prefix.rstrip(".") or "1", kind, charset, _atom(structure[5]).lower() or "7bit")


def _atom(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return "" if value is None else str(value)


def stand_in(header: bytes, part: TextPart | None, text: bytes) -> bytes:
    """A small message standing in for a large one: its headers, and its first text part as body."""
    lines: list[bytes] = []
    skipping = False
    for line in header.rstrip(b"\r\n").split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):  # a folded continuation of the header before
            if not skipping:
                lines.append(line)
            continue
        skipping = line.split(b":", 1)[0].strip().lower() in _MIME_HEADERS
        if not skipping:
            lines.append(line)
    if part is not None:
        charset = f'; charset="{part.charset}"' if part.charset else ""
        lines.append(f"Content-Type: {part.content_type}{charset}".encode())
        lines.append(f"Content-Transfer-Encoding: {part.encoding}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + text
