"""Command line: wires configuration to the pipeline and prints. Results on stdout, logs on stderr.

Each module here registers one group of commands; none of them holds triage logic.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sqlalchemy.exc import OperationalError

from triage import __version__
from triage.cli import backfill, review, route, threads, watch
from triage.errors import TriageError
from triage.store import store_failed

COMMAND_GROUPS = (backfill, watch, route, threads, review)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except OperationalError as exc:  # the store: locked past its timeout, disk full, read-only
        print(f"triage: error: {store_failed(exc)}", file=sys.stderr)
        return 1
    except TriageError as exc:
        print(f"triage: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("triage: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="triage", description="Triage email with a LangGraph assistant and keep a decision log."
    )
    parser.add_argument("--version", action="version", version=f"triage {__version__}")
    parser.add_argument("--config", type=Path, help="TOML file (default: $TRIAGE_CONFIG, else ./triage.toml)")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser
