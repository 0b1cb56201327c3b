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
import gc
import importlib
import os
import sys
import threading
from pathlib import Path
from typing import NoReturn

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
# Allocations between two collections of the youngest generation while a command starts (Python's
# default: 700), and how long starting lasts; see run().
START_UP_YOUNG_GENERATION = 50_000
START_UP_S = 1.0


def run() -> NoReturn:
    """The `triage` executable (and `python -m triage`): main(), with the cyclic garbage collector
    set for a program that loads much and, while it loads, makes no garbage.

    SQLAlchemy and pydantic make hundreds of thousands of objects as they load, all of them to be
    kept, and at Python's default threshold the collector walks them again and again while they
    load, then once more at exit: about a third of `triage log`'s wall time (bench/startup.py).
    For its first second a command collects its young generation every 50,000 allocations, then
    at Python's default again, so a daemon collects as usual. What is alive when main() returns is
    frozen, so exit does not walk it: commands close what they open (a SQLite connection left to
    the collector would leave its WAL file behind), as Python promises no collection at exit.
    """
    collector_set_for_start_up()
    status = main()
    gc.freeze()
    sys.exit(status)


def collector_set_for_start_up() -> threading.Timer:
    """Raise the young generation's threshold now, and put Python's back after START_UP_S seconds
    (the timer returned does it)."""
    default = gc.get_threshold()
    gc.set_threshold(START_UP_YOUNG_GENERATION, *default[1:])
    restore = threading.Timer(START_UP_S, gc.set_threshold, default)
    restore.daemon = True  # a command done sooner does not wait for it
    restore.start()
    return restore


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
