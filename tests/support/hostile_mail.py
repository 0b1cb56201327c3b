"""Hostile and malformed mail for the hardening tests: seeds, mutations and giant shapes.

Mutations take a `random.Random`, so hypothesis drives them in property tests (`st.randoms()`)
and a seeded generator replays the same kinds of damage in end-to-end tests.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

from tests.support.corpus import KINDS, varied_messages

FIXTURES = Path(__file__).parent.parent / "fixtures"
HEAD = b"From: a@example.com\r\nSubject: s\r\nMessage-ID: <m@example.com>\r\n"
CHARSETS = (
    b"utf-8",
    b"x-unknown-42",
    b"idna",
    b"utf-16",
    b"rot13",
    b"us-ascii",
    b"",
    b'"',
    b"utf-7",
    b"punycode",
    b"base64",
    b"iso-2022-jp",
)


def seeds() -> list[bytes]:
    """One corpus message of every kind, plus the hand-collected fixtures."""
    corpus = varied_messages(len(KINDS))
    return corpus + [path.read_bytes() for path in sorted(FIXTURES.glob("*.eml"))]


def _offset(rng: random.Random, raw: bytes) -> int:
    return rng.randrange(len(raw) + 1)


def _splice(rng: random.Random, raw: bytes) -> bytes:
    at = _offset(rng, raw)
    return raw[:at] + rng.randbytes(rng.randrange(1, 64)) + raw[at:]


def _lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\n")


def _drop_line(rng: random.Random, raw: bytes) -> bytes:
    lines = _lines(raw)
    del lines[rng.randrange(len(lines))]
    return b"\n".join(lines)


def _duplicate_line(rng: random.Random, raw: bytes) -> bytes:
    lines = _lines(raw)
    at = rng.randrange(len(lines))
    lines[at:at] = [lines[at]] * rng.randrange(1, 4)
    return b"\n".join(lines)


def _lying_charset(rng: random.Random, raw: bytes) -> bytes:
    charset = rng.choice(CHARSETS)
    if b"charset=" in raw.lower():
        return re.sub(rb"(?i)charset=\"?[^\";\r\n]*\"?", b"charset=" + charset, raw, count=1)
    return HEAD + b"Content-Type: text/plain; charset=" + charset + b"\r\n\r\n" + rng.randbytes(40)


def _break_boundary(rng: random.Random, raw: bytes) -> bytes:
    if rng.random() < 0.5:
        return re.sub(rb"(?i)boundary=\"?", b'boundary="x', raw, count=1)
    return b"\n".join(line for line in _lines(raw) if not line.startswith(b"--"))


def _control_bytes(rng: random.Random, raw: bytes) -> bytes:
    at = _offset(rng, raw)
    return raw[:at] + rng.choice([b"\x00", b"\r", b"\n", b"\x00\x00\r\r\n\n", b"\x1b[2J"]) + raw[at:]


def _eight_bit_header(rng: random.Random, raw: bytes) -> bytes:
    line = b"Subject: \xff\xfe\x80\xc3(" + rng.randbytes(8).replace(b"\n", b"") + b"\r\n"
    return line + raw if rng.random() < 0.5 else raw.replace(b"\r\n", b"\r\n" + line, 1)


def _nest_rfc822(rng: random.Random, raw: bytes) -> bytes:
    return nested_rfc822(raw, rng.randrange(1, 30))


def nested_rfc822(raw: bytes, depth: int) -> bytes:
    for _ in range(depth):
        raw = HEAD + b"Content-Type: message/rfc822\r\n\r\n" + raw
    return raw


def _bad_transfer_encoding(rng: random.Random, raw: bytes) -> bytes:
    encoding = rng.choice([b"base64", b"quoted-printable", b"x-uuencode", b"8bit", b"bogus"])
    junk = rng.choice([b"!!!@@@===", b"=ZZ=\r\n=", b"QUJD\r\n====", b"=\r\n=0", rng.randbytes(30)])
    return HEAD + b"Content-Transfer-Encoding: " + encoding + b"\r\n\r\n" + junk + raw[-200:]


def _truncate(rng: random.Random, raw: bytes) -> bytes:
    return raw[: _offset(rng, raw)] or raw[:1]


MUTATIONS: tuple[Callable[[random.Random, bytes], bytes], ...] = (
    _splice,
    _drop_line,
    _duplicate_line,
    _lying_charset,
    _break_boundary,
    _control_bytes,
    _eight_bit_header,
    _nest_rfc822,
    _bad_transfer_encoding,
    _truncate,
)


def mutated(rng: random.Random, pool: list[bytes]) -> bytes:
    """A seed damaged by one to four mutations."""
    raw = rng.choice(pool)
    for _ in range(rng.randrange(1, 5)):
        raw = rng.choice(MUTATIONS)(rng, raw)
    return raw


def nested_multipart(depth: int) -> bytes:
    raw = b"Content-Type: text/plain\r\n\r\ninnermost"
    for level in range(depth):
        boundary = b"b%d" % level
        raw = (
            b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n--" + boundary + b"\r\n"
            + raw + b"\r\n--" + boundary + b"--\r\n"
        )  # fmt: skip
    return HEAD + raw


def giants() -> dict[str, bytes]:
    """The shapes named in the spec, each built to its full size."""
    html = b"Content-Type: text/html; charset=utf-8\r\n\r\n"
    recipients = b", ".join(b'"User %d" <user%d@example.com>' % (i, i) for i in range(10_000))
    return {
        "10000_recipients": HEAD + b"To: " + recipients + b"\r\n\r\nhello all",
        "5mb_subject": b"From: a@example.com\r\nSubject: " + b"word " * 1_000_000 + b"\r\n\r\nbody",
        "5mb_folded_header": HEAD + b"X-Big: " + b"aaaa\r\n " * 800_000 + b"x\r\n\r\nbody",
        "5mb_content_type": HEAD + b"Content-Type: text/plain; " + b"a=b; " * 1_000_000 + b"\r\n\r\nbody",
        "1000_nested_multipart": nested_multipart(1_000),
        "1000_nested_rfc822": nested_rfc822(HEAD + b"\r\ninner", 1_000),
        "deeply_nested_html": HEAD + html + b"<div>" * 20_000 + b"deep text" + b"</div>" * 20_000,
        "5mb_html": HEAD + html + b"<p>hello <b>world</b></p>" * 200_000,
        "5000_parts": HEAD
        + b"Content-Type: multipart/mixed; boundary=p\r\n\r\n"
        + b"--p\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n" * 5_000
        + b"--p--\r\n",
        "nul_and_bare_cr_lf": b"From: a@example.com\rSubject: s\x00\n\nbody\x00\rline\n\r",
    }
