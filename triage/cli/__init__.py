"""Command line: wires configuration to the library and prints. Results on stdout, logs on stderr.

Each module here is one group of commands, named for it; none holds triage logic. Modules import
only the standard library at the top, and what a command needs when it runs, so that `triage
--help` or `triage log` does not pay for loading the pipeline, SQLAlchemy or pydantic.

Errors are mapped to exit statuses here and nowhere else: a TriageError is one line on stderr and
its exit_code; a failure of the store's database is told as the store's; output cut short by a
closed pipe (`triage log | head`) ends quietly; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from triage import __version__
from triage.errors import TriageError

# The command groups, in the order `triage --help` lists them (modules of this package).
COMMAND_GROUPS = (
    "config",
    "backfill",
    "demo",
    "watch",
    "status",
    "retry",
    "route",
    "threads",
    "log",
    "stats",
    "corrections",
    "replay",
    "rules",
    "purge",
    "web",
)
SIGPIPE_STATUS = 141  # what a shell reports for a program ended by SIGPIPE


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except TriageError as exc:
        return _fail(exc)
    except BrokenPipeError:
        # Whoever read our output has gone: say nothing more, and let the interpreter's own flush
        # of stdout at exit go nowhere instead of raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return SIGPIPE_STATUS
    except KeyboardInterrupt:
        print("triage: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from triage.store.engine import as_store_error  # only now: it loads SQLAlchemy

        failed = as_store_error(exc)
        if failed is None:
            raise
        return _fail(failed)


def _fail(error: TriageError) -> int:
    print(f"triage: error: {error}", file=sys.stderr)
    return error.exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="triage", description="Triage email with a LangGraph assistant and keep a decision log."
    )
    parser.add_argument("--version", action="version", version=f"triage {__version__}")
    parser.add_argument("--config", type=Path, help="TOML file (default: $TRIAGE_CONFIG, else ./triage.toml)")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for name in COMMAND_GROUPS:
        importlib.import_module(f"triage.cli.{name}").register(commands)
    return parser
