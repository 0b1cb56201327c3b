"""Web benchmark: `GET /?q=WORD` and `GET /stats` of `triage web` on a 1,000,000-decision log, beside
`triage log -q WORD` and `triage stats` measured in the same run.

    python bench/web.py                       # 1,000,000 decisions (about 13 minutes to generate; 18.5 GB)
    python bench/web.py --rows 100000         # a smaller log
    python bench/web.py --keep /tmp/big.db    # keep (or reuse) the generated log

The log is bench/review.py's (its generator, its rare and common words). `triage web` runs as a user
runs it, a subprocess on a free loopback port; each page is asked for once to warm up, then
--repeat times over one keep-alive connection, and the median is kept. Each command runs as a
subprocess too (median of --repeat), so its figure includes the interpreter's start, as a user
waits for it; the page's ratio to the command's is printed beside. Target: each page under 300 ms.

Exit status: 0 when every page and command answered what it should, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.review import COMMON_WORD, RARE_WORD, _command, _count, _median_s, generate
from tests.support.browser import WebServer

TARGET_S = 0.3
PAGE_ROWS = re.compile(r'<td class="num"><a href="/decisions/\d+">')


def _page(client: httpx.Client, path: str) -> Callable[[], httpx.Response]:
    return lambda: client.get(path)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="generate into (or reuse) this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="triage-bench-web-") as tmp:
        folder = Path(tmp)
        db = folder / "bench.db"
        if args.keep and args.keep.exists():
            os.symlink(args.keep.resolve(), db)
            print(f"reusing {args.keep} ({_count(db):,} decisions)")
        else:
            target = args.keep or db
            print(f"generating {args.rows:,} decisions ...", flush=True)
            print(f"generated in {generate(target, args.rows):.1f} s ({target.stat().st_size / 1e6:.0f} MB)")
            if args.keep:
                os.symlink(args.keep.resolve(), db)
        return _measure(folder, db, args.repeat)


@dataclass(frozen=True, slots=True)
class Pair:
    """A page and the command that answers the same question, and how to tell each answered right."""

    path: str
    command: tuple[str, ...]
    page_ok: Callable[[str], bool]
    output_ok: Callable[[str], bool]


def _search(word: str, rows: int) -> Pair:
    return Pair(
        f"/?q={word}",
        ("log", "-q", word, "--limit", "50"),
        lambda page: len(PAGE_ROWS.findall(page)) == rows,
        lambda out: out.count("\n") == rows + 1,  # and the header
    )


def _measure(folder: Path, db: Path, repeat: int) -> int:
    count = _count(db)
    pairs = [
        _search(RARE_WORD, _matches(folder, RARE_WORD)),
        _search(COMMON_WORD, 50),
        Pair(
            "/stats",
            ("stats", "--json"),
            lambda page: f"{count} decisions from" in page and page.count("<svg") == 5,
            lambda out: f'"total": {count},' in out,
        ),
    ]
    failures = 0
    print(f"{count:,} decisions\n")
    header = ("page", "median ms", "target", "command", "median ms", "page/command")
    print("{:<18} {:>10} {:>7}   {:<38} {:>10} {:>13}".format(*header))
    with WebServer(db) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        for pair in pairs:
            client.get(pair.path)  # warm: the first request of a page pays for compiling its template
            page_s, response = _median_s(_page(client, pair.path), repeat)
            command_s, done = _median_s(_command(folder, *pair.command), repeat)
            ok = response.status_code == 200 and pair.page_ok(response.text)  # type: ignore[attr-defined]
            ok = ok and done.returncode == 0 and pair.output_ok(done.stdout)  # type: ignore[attr-defined]
            failures += not ok
            verdict = ("met" if page_s < TARGET_S else "MISSED") if ok else "FAILED"
            command = "triage " + " ".join(pair.command)
            print(
                f"GET {pair.path:<14} {page_s * 1000:>10.0f} {verdict:>7}   {command:<38} "
                f"{command_s * 1000:>10.0f} {page_s / command_s:>13.2f}"
            )
    return 1 if failures else 0


def _matches(folder: Path, word: str) -> int:
    """How many rows the first page of a search shows: all matches, at most 50."""
    done = _command(folder, "log", "-q", word, "--limit", "50", "--json")()
    return done.stdout.count("\n")


if __name__ == "__main__":
    raise SystemExit(main())
