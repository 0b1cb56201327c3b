"""A backfill corpus with the sizes of a real mailbox, deterministic and fast to write.

`realistic_messages(count)` yields `count` (kind, raw bytes) pairs; message n depends only on n.
In every 20 messages:

- 11 plain replies of a few KB (`reply`): the thread corpus of tests/support/thread_corpus.py,
  replies quoting two to five earlier messages with signatures, 1.4 to 6.4 KB;
- 6 HTML newsletters of 30 to 100 KB (`newsletter`): multipart/alternative with a text part, or
  (two of the six) HTML only (`newsletter_html_only`), as many senders write them;
- 2 with attachments of 100 KB to 5 MB decoded, log-uniform (`attachments`): a tenth of the mail;
- 1 odd message of the varied test corpus (tests/support/corpus.py: charsets, broken MIME,
  auto-replies, bare LF), its own kind name; one in 23 of those is `garbage_bytes`, not mail.

Every 500th message (n % 500 == 250) is instead 11 to 13.7 MB (`huge`): an 8 to 10 MB attachment,
over imap.max_message_bytes (10 MiB). That cap applies to IMAP fetches only: a file source reads
a message whole, so from an mbox a huge message is parsed and triaged like any other (`ok`).

Attachments are slices of one block of seeded random bytes, base64-encoded once: incompressible,
as photos and archives are, and written at the speed of a copy. Newsletters are put together from
a pool of paragraphs made once, so a corpus of thousands of messages takes seconds to write.
"""

from __future__ import annotations

import base64
import binascii
import functools
import random
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from tests.support.corpus import KINDS, build_message
from tests.support.thread_corpus import thread_message

SEED = 20
CYCLE: tuple[str, ...] = (
    *("reply", "newsletter", "reply", "attachments", "reply", "newsletter_html_only", "reply"),
    *("newsletter", "reply", "varied", "reply", "newsletter", "reply", "attachments", "reply"),
    *("newsletter_html_only", "reply", "newsletter", "reply", "reply"),
)
HUGE_EVERY = 500
NOT_MAIL = "garbage_bytes"  # the varied corpus's kind that is not mail at all: `unparseable`
_B64_LINE = 57  # raw bytes in one 76-character base64 line (78 bytes with its CRLF)
_POOL_BYTES = 10 * 1024 * 1024 + 64 * _B64_LINE
_START = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
_VOCABULARY = (
    "release notes update customers platform pricing webinar roadmap launch feature team product "
    "design report growth market partners events security privacy account billing support guide "
    "tutorial insights analytics mobile cloud storage performance integration workflow community "
    "story interview quarter results offer discount spring summer autumn winter city travel recipe "
    "health science research conference speakers register free limited today tomorrow"
)
_WORDS = _VOCABULARY.split()
_LISTS = (
    ("Product Weekly", "product-weekly.lists.example.org"),
    ("The Ops Digest", "ops-digest.news.example.net"),
    ("Northwind Deals", "deals.northwind.example"),
    ("City Events", "events.city.example"),
    ("Research Roundup", "roundup.science.example"),
)
_FILES = (
    ("application/pdf", "report-{n}.pdf"),
    ("image/jpeg", "IMG_{n}.jpg"),
    ("application/zip", "photos-{n}.zip"),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "draft-{n}.docx"),
    ("video/mp4", "clip-{n}.mp4"),
)


def kind_of(n: int) -> str:
    """The kind of message n: its place in the cycle, or `huge`, or a varied corpus kind."""
    if n % HUGE_EVERY == HUGE_EVERY // 2:
        return "huge"
    kind = CYCLE[n % len(CYCLE)]
    return KINDS[_varied_index(n) % len(KINDS)] if kind == "varied" else kind


def realistic_messages(count: int) -> Iterator[tuple[str, bytes]]:
    """(kind, raw) for messages 0..count-1, made one at a time (a large corpus is never all in memory)."""
    for n in range(count):
        yield kind_of(n), build(n)


def build(n: int) -> bytes:
    """Raw bytes of message n."""
    kind = kind_of(n)
    rng = random.Random(SEED * 1_000_003 + n)
    if kind == "reply":
        return thread_message(n).raw
    if kind in ("newsletter", "newsletter_html_only"):
        return _newsletter(n, rng, with_text=kind == "newsletter")
    if kind == "attachments":
        return _with_attachment(n, rng, _log_uniform(rng, 100_000, 5_000_000))
    if kind == "huge":
        return _with_attachment(n, rng, rng.randrange(8_000_000, 10_000_000))
    return build_message(_varied_index(n))


def _varied_index(n: int) -> int:
    """Which varied corpus message a `varied` slot holds: they are taken in turn, so every kind comes."""
    return n // len(CYCLE)


def _log_uniform(rng: random.Random, low: int, high: int) -> int:
    """Sizes spread as attachments are: as many between 100 KB and 1 MB as between 1 and 10 MB."""
    return round(low * (high / low) ** rng.random())


def _headers(n: int, sender: str, subject: str, extra: str = "") -> str:
    when = format_datetime(_START + timedelta(minutes=37 * n))
    return (
        f"From: {sender}\r\nTo: Anna Berg <anna.berg@northwind.example>\r\nSubject: {subject}\r\n"
        f"Date: {when}\r\nMessage-ID: <sized-{n}@bench.example>\r\nMIME-Version: 1.0\r\n{extra}"
    )


# --------------------------------------------------------------------------- attachments


@functools.cache
def _encoded_pool() -> bytes:
    """Seeded random bytes, base64 in 76-character CRLF lines: every attachment is a slice of it."""
    raw = random.Random(SEED).randbytes(_POOL_BYTES)
    return base64.encodebytes(raw).replace(b"\n", b"\r\n")


def _attachment_base64(rng: random.Random, size: int) -> bytes:
    """About `size` decoded bytes of the pool, whole lines from a line chosen by `rng`."""
    lines = -(-size // _B64_LINE)
    start = rng.randrange(_POOL_BYTES // _B64_LINE - lines + 1)
    return _encoded_pool()[start * (_B64_LINE * 4 // 3 + 2) : (start + lines) * (_B64_LINE * 4 // 3 + 2)]


def _with_attachment(n: int, rng: random.Random, size: int) -> bytes:
    """A short personal note with one file attached (a photo, a report, an archive)."""
    content_type, pattern = _FILES[rng.randrange(len(_FILES))]
    filename = pattern.format(n=n)
    note = textwrap.fill(rng.choice(_paragraphs()), 72).replace("\n", "\r\n")
    boundary = f"=_sized_{n}"
    head = _headers(
        n,
        "Marek Nowak <marek.nowak@fabrikam.example>",
        f"{filename} as promised",
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n',
    )
    return b"".join(
        (
            head.encode(),
            f"\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n".encode(),
            f"Hi Anna,\r\n\r\n{note}\r\n\r\nBest,\r\nMarek\r\n".encode(),
            f"\r\n--{boundary}\r\nContent-Type: {content_type}; name={filename}\r\n"
            f"Content-Disposition: attachment; filename={filename}\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n".encode(),
            _attachment_base64(rng, size),
            f"--{boundary}--\r\n".encode(),
        )
    )


# --------------------------------------------------------------------------- newsletters


@functools.cache
def _paragraphs() -> tuple[str, ...]:
    """Five hundred paragraphs of 40 to 120 words, made once."""
    rng = random.Random(SEED)
    return tuple(
        " ".join(rng.choices(_WORDS, k=rng.randrange(40, 120))).capitalize() + "." for _ in range(500)
    )


def _newsletter(n: int, rng: random.Random, *, with_text: bool) -> bytes:
    """A newsletter of 30 to 100 KB: table layout, inline styles, tracked links, a text part or none."""
    label, list_id = _LISTS[n % len(_LISTS)]
    target = rng.randrange(32_000, 96_000)  # 30 to 100 KB as written
    articles: list[tuple[str, str, str]] = []
    size = 2_000  # the headers, the HTML's head, styles and footer
    while size < target:
        title = " ".join(rng.choices(_WORDS, k=5)).title()
        text = rng.choice(_paragraphs())
        link = f"https://click.{list_id}/t/{n}-{len(articles)}?u={rng.getrandbits(64):016x}"
        articles.append((title, text, link))
        size += 520 + len(title) + len(text) + 3 * len(link)  # with quoted-printable's soft breaks
        size += len(title) + len(text) + len(link) + 16 if with_text else 0
    html = _newsletter_html(label, list_id, n, articles).encode()
    boundary = f"=_news_{n}"
    head = _headers(
        n,
        f"{label} <newsletter@{list_id}>",
        f"{label}: {articles[0][0]}",
        f"List-Id: {label} <{list_id}>\r\nList-Unsubscribe: <https://{list_id}/unsubscribe/{n}>\r\n"
        f'Precedence: bulk\r\nContent-Type: multipart/alternative; boundary="{boundary}"\r\n',
    )
    parts = [head.encode()]
    if with_text:
        text = "\n\n".join(f"{title}\n{body}\nRead more: {link}" for title, body, link in articles)
        parts.append(_part(boundary, "text/plain", text.encode()))
    parts += [_part(boundary, "text/html", html), f"\r\n--{boundary}--\r\n".encode()]
    return b"".join(parts)


def _part(boundary: str, content_type: str, payload: bytes) -> bytes:
    """A quoted-printable part, as most newsletters send their text and HTML."""
    encoded = binascii.b2a_qp(payload).replace(b"\n", b"\r\n")
    head = f"\r\n--{boundary}\r\nContent-Type: {content_type}; charset=utf-8\r\n"
    return head.encode() + b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + encoded


def _newsletter_html(label: str, list_id: str, n: int, articles: list[tuple[str, str, str]]) -> str:
    """Table layout with inline styles on every cell, as newsletter builders write it."""
    cell = 'style="padding:12px 24px;font-family:Helvetica,Arial,sans-serif;font-size:15px;color:#333333"'
    rows = "".join(
        f'<tr><td {cell}><img src="https://img.{list_id}/{n}/{i}.png" width="552" height="200" '
        f'alt="" style="display:block;border:0"><h2 style="margin:16px 0 8px;font-size:20px">'
        f'{title}</h2><p style="margin:0 0 12px;line-height:1.5">{body}</p>'
        f'<a href="{link}" style="color:#0a66c2;text-decoration:none;font-weight:bold">Read more</a>'
        f'<span style="display:none">{link}</span></td></tr>\n'
        for i, (title, body, link) in enumerate(articles)
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><style>'
        "body{margin:0;padding:0;background:#f4f4f4} table{border-collapse:collapse} "
        "@media (max-width:600px){.wrap{width:100%!important}} .preheader{display:none}"
        '</style></head><body><div class="preheader">This week\'s news</div>'
        '<table class="wrap" width="600" align="center" cellpadding="0" cellspacing="0" '
        f'style="background:#ffffff"><tr><td {cell}><h1>{label}</h1></td></tr>\n{rows}'
        f"<tr><td {cell}><small>You receive this because you subscribed. "
        f'<a href="https://{list_id}/unsubscribe/{n}">Unsubscribe</a></small></td></tr>'
        "</table></body></html>"
    )
