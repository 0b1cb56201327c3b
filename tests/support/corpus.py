"""Deterministic generator of varied raw RFC 5322 messages for tests.

``varied_messages(count)`` returns ``count`` raw messages (``bytes``) that cycle
through the shapes listed in ``KINDS``; ``kinds(count)`` names the shape of each
message in the same order.  Message ``n`` depends only on ``n``, so
``varied_messages(10) == varied_messages(210)[:10]``.

Every message carries ``Message-ID: <corpus-N@example.test>`` (``N`` is its index
in the list), except the kinds in ``NO_MESSAGE_ID_KINDS``.  Apart from
``bare_lf`` and ``garbage_bytes``, messages use CRLF line endings, as they come
off the wire.

Pure stdlib; the only randomness is ``random.Random(n)`` per message.

Run ``python tests/corpus.py OUT.mbox [N]`` to write N messages (default 210) to
an mbox file for manual poking.
"""

from __future__ import annotations

import base64
import datetime as dt
import quopri
import random
import struct
import sys
import urllib.parse
import zlib
from collections import Counter
from email.utils import format_datetime

# Every kind, in the order they cycle.
KINDS: tuple[str, ...] = (
    "plain_utf8",
    "alternative",
    "html_only",
    "charset_latin1",
    "charset_cp1252",
    "charset_koi8r",
    "charset_shift_jis",
    "charset_gb2312",
    "rfc2047_b_utf8",
    "rfc2047_q_latin1",
    "rfc2047_unknown_charset",
    "attachments",
    "mailing_list",
    "auto_submitted",
    "reply",
    "no_date_no_message_id",
    "garbage_date",
    "mime_missing_boundary",
    "mime_wrong_boundary",
    "invalid_base64",
    "raw_8bit_header",
    "bare_lf",
    "garbage_bytes",
)

# Kinds that are broken on purpose (bad headers, bad MIME, or not an email at all).
MALFORMED_KINDS: frozenset[str] = frozenset(
    {
        "rfc2047_unknown_charset",
        "garbage_date",
        "mime_missing_boundary",
        "mime_wrong_boundary",
        "invalid_base64",
        "raw_8bit_header",
        "garbage_bytes",
    }
)

# Kinds without a Message-ID header.
NO_MESSAGE_ID_KINDS: frozenset[str] = frozenset({"no_date_no_message_id", "garbage_bytes"})

# Kinds without a (parseable) Date header.
NO_DATE_KINDS: frozenset[str] = frozenset({"no_date_no_message_id", "garbage_date", "garbage_bytes"})

# Text inside the <style> and <script> blocks of ``html_only`` messages; a text
# extractor must not return either.
STYLE_MARKER = "corpus-style-marker"
SCRIPT_MARKER = "SCRIPT-MARKER-SHOULD-NOT-BE-READABLE"

# Readable text that appears in the decoded body of each ``charset_*`` kind.
CHARSET_SAMPLES: dict[str, tuple[str, str]] = {
    # kind: (declared charset, text)
    "charset_latin1": (
        "iso-8859-1",
        "Sehr geehrte Damen und Herren,\n\n"
        "bitte prüfen Sie die Rechnung für Oktober. Die Größe der Datei beträgt 12 MB.\n"
        "Réponse souhaitée avant jeudi, à bientôt.\n\n"
        "Mit freundlichen Grüßen\nJürgen Weiß\n",
    ),
    "charset_cp1252": (
        "windows-1252",
        "Hi team,\n\n"
        "The vendor\u2019s quote came in at \u20ac1.240 \u2013 that\u2019s "
        "\u201cfinal\u201d, apparently\u2026\n"
        "Product name is Widget\u2122 Pro.\n\nCheers,\nNadia\n",
    ),
    "charset_koi8r": (
        "koi8-r",
        "Здравствуйте!\n\n"
        "Прошу подтвердить встречу в четверг в 15:00.\n"
        "Счёт за октябрь во вложении.\n\n"
        "С уважением,\nОльга\n",  # noqa: RUF001
    ),
    "charset_shift_jis": (
        "shift_jis",
        "お世話になっております。\n"
        "請求書を送付いたしましたので、ご確認ください。\n"
        "よろしくお願いいたします。\n",
    ),
    "charset_gb2312": (
        "gb2312",
        "您好，\n\n附件是本月的发票，请查收。\n会议改到星期四下午三点。\n\n谢谢！\n",  # noqa: RUF001
    ),
}

_SENDERS: tuple[tuple[str, str], ...] = (
    ("Priya Raman", "priya.raman@example.org"),
    ("Dana Whitfield", "dana@example.com"),
    ("Marek Kowalski", "marek.k@example.net"),
    ("Aiko Tanaka", "aiko@customers.example.org"),
    ("Lena Vogel", "lena.vogel@example.net"),
    ("Samuel Okafor", "sam.okafor@example.org"),
    ("Grace Lindqvist", "grace@mail.example.test"),
    ("Ravi Menon", "ravi.menon@example.com"),
    ("Chloe Martin", "chloe@example.net"),
    ("Felix Brandt", "felix.brandt@example.org"),
    ("Nadia Haddad", "nadia@vendor.example.test"),
    ("Oliver Grant", "ogrant@example.net"),
)

_RECIPIENTS: tuple[str, ...] = (
    "Support <support@example.com>",
    "team@example.com",
    "Billing <billing@example.com>",
    "Ops Team <ops@example.com>, support@example.com",
)

_COMPONENTS = (
    "the CSV exporter",
    "the sync daemon",
    "the login page",
    "the REST API",
    "the dashboard",
    "the mobile app",
    "the report builder",
    "the importer",
)
_TOPICS = (
    "Q1 roadmap",
    "budget review",
    "onboarding plan",
    "incident retro",
    "release planning",
    "vendor renewal",
    "security audit",
    "hiring sync",
)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")

_SUBJECT_TEMPLATES: tuple[str, ...] = (
    "Invoice #{num} for October services",
    "Meeting request: {topic} on {day}",
    "Bug: {component} crashes on large files",
    "[Bug] {component} returns HTTP 500 after upgrade to 4.{minor}",
    "Payment reminder: invoice {num} is overdue",
    "Agenda for {day}'s {topic} sync",
    "Feature request: dark mode for {component}",
    "Password reset email never arrives (ticket {num})",
    "Question about volume licensing for {minor}0 seats",
    "Draft: {topic} notes for review",
    "Your order {num} has shipped",
    "Re-scheduling the {topic} meeting",
)

_NEWSLETTER_SUBJECTS: tuple[str, ...] = (
    "[product-weekly] Release notes 4.{minor} and an upcoming webinar",
    "The Ops Digest, issue #{num}: postmortems worth reading",
    "Frontend Notes #{minor}: CSS anchor positioning in practice",
    "[dev-announce] Maintenance window on {day}",
)

_TZ_OFFSETS_MIN: tuple[int, ...] = (0, 60, -300, 330, 540, -480, 120, -180, 600, -420)

_BASE_DATE = dt.datetime(2026, 11, 1, 7, 30)


# --------------------------------------------------------------------------- helpers


def message_id(n: int) -> str:
    """The Message-ID (with angle brackets) of corpus message ``n``."""
    return f"<corpus-{n}@example.test>"


def support_mail(
    n: int, subject: str, *, reply_to: int | None = None, list_id: bool = False, tag: str = "r"
) -> bytes:
    """A plain message to a support inbox: a request, a reply to message `reply_to`, or list mail."""
    headers = [
        f"From: customer{n}@example.com",
        "To: support@example.com",
        f"Subject: {subject}",
        f"Message-ID: <{tag}-{n}@example.test>",
        "Date: Tue, 03 Nov 2026 09:00:00 +0000",
    ]
    if reply_to is not None:
        headers += [
            f"In-Reply-To: <{tag}-{reply_to}@example.test>",
            f"References: <{tag}-{reply_to}@example.test>",
        ]
    if list_id:
        headers.append("List-Id: Weekly news <news.example.org>")
    return ("\r\n".join(headers) + f"\r\n\r\nBody of message {n}.\r\n").encode()


def kinds(count: int = 210) -> list[str]:
    """The kind name of each message in varied_messages(count), same order."""
    return [KINDS[i % len(KINDS)] for i in range(count)]


def kind_counts(count: int = 210) -> dict[str, int]:
    """How many messages of each kind ``varied_messages(count)`` holds (KINDS order)."""
    counter = Counter(kinds(count))
    return {kind: counter[kind] for kind in KINDS}


def malformed_count(count: int = 210) -> int:
    """How many of ``varied_messages(count)`` are of a kind in MALFORMED_KINDS."""
    return sum(1 for kind in kinds(count) if kind in MALFORMED_KINDS)


def varied_messages(count: int = 210) -> list[bytes]:
    """Deterministic list of raw messages cycling through many shapes."""
    return [build_message(n) for n in range(count)]


def build_message(n: int) -> bytes:
    """Raw bytes of corpus message ``n`` (its kind is ``KINDS[n % len(KINDS)]``)."""
    kind = KINDS[n % len(KINDS)]
    return _BUILDERS[kind](n, random.Random(n))


def subject_for(n: int) -> str:
    """The ordinary (ASCII) subject used by message ``n`` when its kind needs one."""
    rng = random.Random(n * 7919 + 1)
    return rng.choice(_SUBJECT_TEMPLATES).format(**_fields(rng, n))


def _fields(rng: random.Random, n: int) -> dict[str, str]:
    return {
        "num": str(4000 + n * 13 % 997),
        "topic": rng.choice(_TOPICS),
        "day": rng.choice(_DAYS),
        "component": rng.choice(_COMPONENTS),
        "minor": str(1 + n % 9),
    }


def _date(n: int) -> str:
    offset = _TZ_OFFSETS_MIN[n % len(_TZ_OFFSETS_MIN)]
    tz = dt.timezone(dt.timedelta(minutes=offset))
    when = (_BASE_DATE + dt.timedelta(minutes=97 * n)).replace(tzinfo=tz)
    return format_datetime(when)


def _sender(rng: random.Random) -> tuple[str, str]:
    return rng.choice(_SENDERS)


def _from(rng: random.Random) -> str:
    name, addr = _sender(rng)
    return f"{name} <{addr}>"


def _headers(
    n: int,
    rng: random.Random,
    subject: str | bytes,
    *,
    sender: str | bytes | None = None,
    date: bool = True,
    mid: bool = True,
) -> list[tuple[str, str | bytes]]:
    headers: list[tuple[str, str | bytes]] = [
        ("From", sender if sender is not None else _from(rng)),
        ("To", rng.choice(_RECIPIENTS)),
        ("Subject", subject),
    ]
    if date:
        headers.append(("Date", _date(n)))
    if mid:
        headers.append(("Message-ID", message_id(n)))
    headers.append(("MIME-Version", "1.0"))
    return headers


def _assemble(headers: list[tuple[str, str | bytes]], body: bytes, *, eol: bytes = b"\r\n") -> bytes:
    """Join headers and body (both written with bare \\n) and apply ``eol``."""
    lines = []
    for name, value in headers:
        raw = value if isinstance(value, bytes) else value.encode("ascii")
        lines.append(name.encode("ascii") + b": " + raw)
    if not body.endswith(b"\n"):
        body += b"\n"
    message = b"\n".join(lines) + b"\n\n" + body
    if b"\r" in message:
        raise ValueError("write corpus parts with bare \\n; _assemble adds CRLF")
    return message.replace(b"\n", eol) if eol != b"\n" else message


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data)  # 76-column lines, trailing newline


def _qp(data: bytes) -> bytes:
    return quopri.encodestring(data)


def _ew(charset: str, enc: str, text: str) -> str:
    """An RFC 2047 encoded-word."""
    data = text.encode(charset)
    if enc == "B":
        payload = base64.b64encode(data).decode("ascii")
    else:
        payload = "".join(
            "_" if b == 0x20 else chr(b) if chr(b).isascii() and chr(b).isalnum() else f"={b:02X}"
            for b in data
        )
    return f"=?{charset}?{enc}?{payload}?="


def _plain_body(rng: random.Random, subject: str, name: str) -> str:
    openers = ("Hi team,", "Hello,", "Good morning,", "Hi all,", "Dear support,")
    middles = (
        "Following up on our call: please find the details below.",
        "Steps to reproduce: open the project, click Export, wait about 30 seconds.",
        "The amount due is 1,240.00 EUR, payable within 30 days.",
        "Could we move this to 15:00 instead? The room is booked until then.",
        "We see this on roughly 3% of requests since Tuesday's deploy.",
        "Let me know if you need anything else from our side.",
    )
    return (
        f"{rng.choice(openers)}\n\n"
        f"Regarding \u201c{subject}\u201d:\n"
        f"{rng.choice(middles)}\n"
        f"{rng.choice(middles)}\n\n"
        f"Thanks \u2014 see you at the caf\u00e9 \u2615\n"
        f"{name}\n"
    )


# --------------------------------------------------------------------------- binaries


def _tiny_pdf(text: str) -> bytes:
    """A small but well-formed one-page PDF showing ``text`` (ASCII)."""
    content = f"BT /F1 14 Tf 24 100 Td ({text}) Tj ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 144] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i, obj)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _tiny_png(seed: int) -> bytes:
    """An 8x8 RGB PNG whose colours depend on ``seed``."""
    width = height = 8
    rows = b"".join(
        b"\x00" + b"".join(bytes(((x * 32 + seed) % 256, (y * 32) % 256, 128)) for x in range(width))
        for y in range(height)
    )

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------- kinds


def _k_plain_utf8(n: int, rng: random.Random) -> bytes:
    name, addr = _sender(rng)
    subject = subject_for(n)
    headers = _headers(n, rng, subject, sender=f"{name} <{addr}>")
    headers += [
        ("Content-Type", 'text/plain; charset="utf-8"'),
        ("Content-Transfer-Encoding", "8bit"),
    ]
    return _assemble(headers, _plain_body(rng, subject, name).encode("utf-8"))


def _k_alternative(n: int, rng: random.Random) -> bytes:
    name, addr = _sender(rng)
    subject = subject_for(n)
    boundary = f"==alt-{n}-boundary=="
    text = _plain_body(rng, subject, name)
    html = (
        "<html><body>\n"
        + "".join(f"<p>{line}</p>\n" for line in text.splitlines() if line)
        + "</body></html>\n"
    )
    headers = _headers(n, rng, subject, sender=f"{name} <{addr}>")
    headers.append(("Content-Type", f'multipart/alternative; boundary="{boundary}"'))
    body = (
        b"This is a multi-part message in MIME format.\n\n"
        + f"--{boundary}\n".encode()
        + b'Content-Type: text/plain; charset="utf-8"\n'
        + b"Content-Transfer-Encoding: quoted-printable\n\n"
        + _qp(text.encode("utf-8"))
        + f"\n--{boundary}\n".encode()
        + b'Content-Type: text/html; charset="utf-8"\n'
        + b"Content-Transfer-Encoding: 8bit\n\n"
        + html.encode("utf-8")
        + f"\n--{boundary}--\n".encode()
    )
    return _assemble(headers, body)


def _k_html_only(n: int, rng: random.Random) -> bytes:
    subject = rng.choice(
        (
            "Black Friday: 40% off all conference passes",
            "Your November product update is here",
            "Last chance: early-bird pricing ends tonight",
        )
    )
    html = f"""<!DOCTYPE html>
<html><head>
<meta charset="utf-8">
<title>Newsletter</title>
<style type="text/css">
  .{STYLE_MARKER} {{ color: #c00; font-family: Helvetica, sans-serif; }}
  p {{ margin: 0 0 12px 0; }}
</style>
<script type="text/javascript">
  var tracker = "{SCRIPT_MARKER}";
  document.write(tracker);
</script>
</head>
<body>
<h1 class="{STYLE_MARKER}">{subject}</h1>
<p>Hello there,<br>we have news for you.<br/>Read it before Friday.</p>
<p>Visit <a href="https://shop.example.net/deals?id={n}">our deals page</a>
or <a href="mailto:sales@example.net">email sales</a> &amp; save 40&nbsp;percent.</p>
<!-- a comment nobody should read -->
<p>Unsubscribe <a href="https://shop.example.net/unsub/{n}">here</a>.</p>
<img src="https://shop.example.net/pixel/{n}.gif" width="1" height="1" alt="">
</body></html>
"""
    headers = _headers(n, rng, subject, sender="Example Events <events@example.net>")
    headers += [
        ("Content-Type", 'text/html; charset="utf-8"'),
        ("Content-Transfer-Encoding", "7bit"),
    ]
    return _assemble(headers, html.encode("ascii"))


def _charset_kind(kind: str, subject: str, cte: str):
    def build(n: int, rng: random.Random) -> bytes:
        charset, text = CHARSET_SAMPLES[kind]
        data = text.encode(charset)
        if cte == "base64":
            body = _b64(data)
        elif cte == "quoted-printable":
            body = _qp(data)
        else:
            body = data
        headers = _headers(n, rng, f"{subject} ({n})")
        headers += [
            ("Content-Type", f'text/plain; charset="{charset}"'),
            ("Content-Transfer-Encoding", cte),
        ]
        return _assemble(headers, body)

    return build


def _k_rfc2047_b_utf8(n: int, rng: random.Random) -> bytes:
    # Two adjacent encoded-words on a folded line: the whitespace between them
    # must vanish when decoded.
    part1 = "\u00dcberweisung best\u00e4tigt \u2013 "
    part2 = f"Rechnung {4700 + n} \u2713"
    subject = f"{_ew('UTF-8', 'B', part1)}\n {_ew('UTF-8', 'B', part2)}"
    sender = _ew("UTF-8", "Q", "J\u00fcrgen M\u00fcller") + " <juergen@example.org>"
    headers = _headers(n, rng, subject, sender=sender)
    headers += [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Transfer-Encoding", "8bit"),
    ]
    body = "Die Zahlung ist eingegangen. Vielen Dank!\n\nJ\u00fcrgen\n"
    return _assemble(headers, body.encode("utf-8"))


def _k_rfc2047_q_latin1(n: int, rng: random.Random) -> bytes:
    subject = _ew("ISO-8859-1", "Q", "R\u00e9union d'\u00e9quipe") + f" jeudi {n}"
    sender = _ew("iso-8859-1", "B", "\u00c9lodie F\u00e0vre") + " <elodie@example.net>"
    headers = _headers(n, rng, subject, sender=sender)
    headers += [
        ("Content-Type", "text/plain; charset=iso-8859-1"),
        ("Content-Transfer-Encoding", "quoted-printable"),
    ]
    body = "Bonjour \u00e0 tous,\n\nla r\u00e9union est d\u00e9plac\u00e9e \u00e0 14h.\n\n\u00c9lodie\n"
    return _assemble(headers, _qp(body.encode("iso-8859-1")))


def _k_rfc2047_unknown_charset(n: int, rng: random.Random) -> bytes:
    subject = f"Quarterly numbers =?x-unknown?Q?abc?= attached ({n})"
    sender = f"=?x-unknown?B?SGVsbG8=?= <{_sender(rng)[1]}>"
    headers = _headers(n, rng, subject, sender=sender)
    headers += [("Content-Type", "text/plain; charset=us-ascii")]
    return _assemble(headers, b"Numbers for Q3 are in the shared folder.\n")


def _k_attachments(n: int, rng: random.Random) -> bytes:
    name, addr = _sender(rng)
    boundary = f"----=_mixed_{n:05d}"
    pdf_name = f"invoice-{4000 + n}.pdf"
    if n // len(KINDS) % 2 == 0:
        fname = "R\u00e9sum\u00e9 Q3 \u2013 notes.txt"
        disp = f"attachment; filename*=UTF-8''{urllib.parse.quote(fname)}"
    else:
        fname = "Proc\u00e8s-verbal r\u00e9union.txt"
        quoted = urllib.parse.quote(fname)
        disp = f"attachment;\n filename*0*=UTF-8''{quoted[:12]};\n filename*1*={quoted[12:]}"
    body = (
        f"--{boundary}\n"
        'Content-Type: text/plain; charset="utf-8"\n'
        "Content-Transfer-Encoding: 8bit\n\n"
        f"Hi,\n\nplease find the invoice, a chart and my notes attached.\n\n{name}\n\n"
        f"--{boundary}\n"
        f'Content-Type: application/pdf; name="{pdf_name}"\n'
        f'Content-Disposition: attachment; filename="{pdf_name}"\n'
        "Content-Transfer-Encoding: base64\n\n"
    ).encode()
    body += _b64(_tiny_pdf(f"Invoice {4000 + n} - amount due 1240.00 EUR"))
    body += (
        f"\n--{boundary}\n"
        'Content-Type: image/png; name="chart.png"\n'
        'Content-Disposition: inline; filename="chart.png"\n'
        f"Content-ID: <chart-{n}@example.test>\n"
        "Content-Transfer-Encoding: base64\n\n"
    ).encode()
    body += _b64(_tiny_png(n))
    body += (
        f"\n--{boundary}\n"
        'Content-Type: text/plain; charset="utf-8"\n'
        f"Content-Disposition: {disp}\n"
        "Content-Transfer-Encoding: base64\n\n"
    ).encode("ascii")
    body += _b64(b"Notes: revenue up 4 %, churn down.\n")
    body += f"\n--{boundary}--\n".encode()
    headers = _headers(n, rng, subject_for(n), sender=f"{name} <{addr}>")
    headers.append(("Content-Type", f'multipart/mixed; boundary="{boundary}"'))
    return _assemble(headers, body)


def _k_mailing_list(n: int, rng: random.Random) -> bytes:
    subject = rng.choice(_NEWSLETTER_SUBJECTS).format(**_fields(rng, n))
    lists = (
        ("Product Weekly", "product-weekly.lists.example.org"),
        ("The Ops Digest", "ops-digest.news.example.net"),
        ("Frontend Notes", "frontend-notes.example.org"),
    )
    label, list_id = lists[n % len(lists)]
    headers = _headers(n, rng, subject, sender=f"{label} <newsletter@example.org>")
    headers += [
        ("List-Id", f"{label} <{list_id}>"),
        (
            "List-Unsubscribe",
            f"<mailto:unsubscribe@example.org?subject=unsubscribe-{n}>,\n"
            f" <https://lists.example.org/unsubscribe/{n}>",
        ),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("Precedence", "list"),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Transfer-Encoding", "7bit"),
    ]
    body = (
        f"{label}\n{'=' * len(label)}\n\n"
        "In this issue:\n"
        "  * What's new in release 4.x\n"
        "  * Three postmortems worth reading\n"
        "  * Upcoming webinar: scaling background jobs\n\n"
        "You are receiving this because you subscribed.\n"
        f"Unsubscribe: https://lists.example.org/unsubscribe/{n}\n"
    )
    return _assemble(headers, body.encode("ascii"))


def _k_auto_submitted(n: int, rng: random.Random) -> bytes:
    name, addr = _sender(rng)
    prefix = rng.choice(("Out of Office:", "Automatic reply:", "Auto:"))
    headers = _headers(n, rng, f"{prefix} {subject_for(n)}", sender=f"{name} <{addr}>")
    headers += [
        ("Auto-Submitted", "auto-replied"),
        ("X-Auto-Response-Suppress", "All"),
        ("Content-Type", "text/plain; charset=utf-8"),
    ]
    body = (
        "Thank you for your message.\n\n"
        "I am out of the office until Monday 16 November with limited access to email.\n"
        "For urgent matters please contact support@example.com.\n\n"
        f"{name}\n"
    )
    return _assemble(headers, body.encode("ascii"))


def _k_reply(n: int, rng: random.Random) -> bytes:
    # The plain_utf8 message of the same cycle: always earlier and always has a Message-ID.
    parent = n - KINDS.index("reply") + KINDS.index("plain_utf8")
    name, addr = _sender(rng)
    parent_subject = subject_for(parent)
    headers = _headers(n, rng, f"Re: {parent_subject}", sender=f"{name} <{addr}>")
    refs = message_id(parent)
    if n // len(KINDS) % 2 == 1:  # thread root that is not in the corpus, then the parent
        refs = f"<thread-root-{parent}@mail.example.net>\n {refs}"
    headers += [
        ("In-Reply-To", message_id(parent)),
        ("References", refs),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Transfer-Encoding", "8bit"),
    ]
    body = (
        "Thanks, that works for me.\n"
        "From what I can see the fix is already in staging.\n\n"
        f"On {_date(parent)}, someone wrote:\n"
        f"> Regarding {parent_subject}\n"
        "> Could you take a look?\n"
    )
    return _assemble(headers, body.encode("utf-8"))


def _k_no_date_no_message_id(n: int, rng: random.Random) -> bytes:
    headers = _headers(n, rng, subject_for(n), date=False, mid=False)
    headers.append(("Content-Type", "text/plain; charset=us-ascii"))
    return _assemble(headers, b"This message has neither a Date nor a Message-ID.\n")


_GARBAGE_DATES = (
    "sometime last tuesday",
    "Thu, 45 Foo 2026 99:99:99 +9999",
    "2026-13-45T25:61:00",
    "Mon, 31 Feb 2026 10:00:00 +0000",
    "",
    "Fri, 13 Nov 2026 10:00:00 +2500",
    "0",
)


def _k_garbage_date(n: int, rng: random.Random) -> bytes:
    headers = _headers(n, rng, subject_for(n), date=False)
    headers.insert(3, ("Date", _GARBAGE_DATES[n // len(KINDS) % len(_GARBAGE_DATES)]))
    headers.append(("Content-Type", "text/plain; charset=us-ascii"))
    return _assemble(headers, b"The Date header of this message is nonsense.\n")


def _k_mime_missing_boundary(n: int, rng: random.Random) -> bytes:
    headers = _headers(n, rng, subject_for(n))
    headers.append(("Content-Type", "multipart/mixed"))  # no boundary parameter
    body = (
        b"--lost-boundary\n"
        b"Content-Type: text/plain\n\n"
        b"Text of a multipart message whose boundary parameter is missing.\n"
        b"--lost-boundary--\n"
    )
    return _assemble(headers, body)


def _k_mime_wrong_boundary(n: int, rng: random.Random) -> bytes:
    headers = _headers(n, rng, subject_for(n))
    headers.append(("Content-Type", f'multipart/alternative; boundary="declared-{n}"'))
    body = (
        f"--actual-{n}\n"
        "Content-Type: text/plain\n\n"
        "The declared boundary never appears in this body.\n"
        f"--actual-{n}\n"
        "Content-Type: text/html\n\n"
        "<p>The declared boundary never appears in this body.</p>\n"
        f"--actual-{n}--\n"
    )
    return _assemble(headers, body.encode("ascii"))


def _k_invalid_base64(n: int, rng: random.Random) -> bytes:
    headers = _headers(n, rng, subject_for(n))
    headers += [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Transfer-Encoding", "base64"),
    ]
    if n // len(KINDS) % 2 == 0:
        body = b"This is not base64 at all! ###\n@@@ ~~~ %%%\n"
    else:  # valid alphabet, wrong length / padding
        body = base64.b64encode("Truncated h\u00e9llo world".encode())[:-3] + b"\n"
    return _assemble(headers, body)


def _k_raw_8bit_header(n: int, rng: random.Random) -> bytes:
    headers = _headers(
        n,
        rng,
        f"R\u00e9union caf\u00e9 \u2014 agenda {n}".encode(),  # raw UTF-8, undeclared
        sender=b"Fran\xe7ois Dupont <francois@example.net>",  # raw Latin-1, not UTF-8
    )
    headers.append(("Content-Type", "text/plain; charset=us-ascii"))
    return _assemble(headers, b"Headers of this message contain undeclared 8-bit bytes.\n")


def _k_bare_lf(n: int, rng: random.Random) -> bytes:
    name, addr = _sender(rng)
    subject = subject_for(n)
    headers = _headers(n, rng, subject, sender=f"{name} <{addr}>")
    headers += [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Transfer-Encoding", "8bit"),
    ]
    return _assemble(headers, _plain_body(rng, subject, name).encode("utf-8"), eol=b"\n")


def _k_garbage_bytes(n: int, rng: random.Random) -> bytes:
    return b"\x00\xff\xfe garbage \x00" * (10 + n % 5) + b"#%d" % n


_BUILDERS = {
    "plain_utf8": _k_plain_utf8,
    "alternative": _k_alternative,
    "html_only": _k_html_only,
    "charset_latin1": _charset_kind("charset_latin1", "Rechnung Oktober", "8bit"),
    "charset_cp1252": _charset_kind("charset_cp1252", "Vendor quote", "quoted-printable"),
    "charset_koi8r": _charset_kind("charset_koi8r", "Meeting on Thursday", "8bit"),
    "charset_shift_jis": _charset_kind("charset_shift_jis", "Invoice sent", "base64"),
    "charset_gb2312": _charset_kind("charset_gb2312", "Invoice and meeting", "8bit"),
    "rfc2047_b_utf8": _k_rfc2047_b_utf8,
    "rfc2047_q_latin1": _k_rfc2047_q_latin1,
    "rfc2047_unknown_charset": _k_rfc2047_unknown_charset,
    "attachments": _k_attachments,
    "mailing_list": _k_mailing_list,
    "auto_submitted": _k_auto_submitted,
    "reply": _k_reply,
    "no_date_no_message_id": _k_no_date_no_message_id,
    "garbage_date": _k_garbage_date,
    "mime_missing_boundary": _k_mime_missing_boundary,
    "mime_wrong_boundary": _k_mime_wrong_boundary,
    "invalid_base64": _k_invalid_base64,
    "raw_8bit_header": _k_raw_8bit_header,
    "bare_lf": _k_bare_lf,
    "garbage_bytes": _k_garbage_bytes,
}
assert set(_BUILDERS) == set(KINDS)


if __name__ == "__main__":
    import mailbox

    if len(sys.argv) not in (2, 3):
        sys.exit(f"usage: {sys.argv[0]} OUT.mbox [COUNT]")
    total = int(sys.argv[2]) if len(sys.argv) == 3 else 210
    box = mailbox.mbox(sys.argv[1])
    box.lock()
    try:
        for raw in varied_messages(total):
            box.add(raw)
        box.flush()
    finally:
        box.unlock()
        box.close()
    print(f"wrote {total} messages to {sys.argv[1]}")
