"""`triage correct` and `triage review`: people's corrections and confirmations, beside the decisions."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TYPE_CHECKING, Any

from triage.cli.log import open_log, print_essentials, print_explanation
from triage.errors import TriageError

if TYPE_CHECKING:  # at run time, each command imports what it needs when it runs (see triage.cli)
    from triage.store.decisions import Store


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    correct = commands.add_parser("correct", help="record a correction (or a confirmation) beside a decision")
    correct.add_argument("ref", metavar="ID", help="a decision id or a Message-ID")
    given = correct.add_mutually_exclusive_group(required=True)
    given.add_argument("--decision", help="new-task, existing-thread or ignore")
    given.add_argument("--confirm", action="store_true", help="the recorded decision is right")
    correct.add_argument("--thread", help="the thread id (required for existing-thread)")
    correct.add_argument("--note", help="why")
    correct.add_argument("--author", default=_user(), help="who corrects (default: the login name)")
    correct.set_defaults(handler=cmd_correct)

    walk = commands.add_parser("review", help="walk the needs-review queue in the terminal, one key each")
    walk.add_argument("--all", action="store_true", help="recent decisions of any status, not only the queue")
    walk.add_argument("--limit", type=int, default=50, help="at most N decisions (default 50)")
    walk.add_argument("--author", default=_user(), help="who corrects (default: the login name)")
    walk.set_defaults(handler=cmd_review)


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def cmd_correct(args: argparse.Namespace) -> int:
    from triage.log.corrections import confirm, correct
    from triage.log.explain import resolve

    if args.confirm and args.thread:
        raise TriageError("--confirm takes the recorded thread: drop --thread")
    with open_log(args) as store:
        decision_id = resolve(store, args.ref)
        if args.confirm:
            label = confirm(store, decision_id, note=args.note, author=args.author)
        else:
            label = correct(
                store, decision_id, args.decision, thread_id=args.thread, note=args.note, author=args.author
            )
    thread = f" (thread {label['thread_id']})" if label["thread_id"] else ""
    if args.confirm:
        print(f"decision {decision_id} confirmed as {label['decision']}{thread}")
    else:
        print(f"decision {decision_id} corrected to {label['decision']}{thread}; the original is kept")
    return 0


_KEYS = "[a]ccept  [n]ew-task  [e]xisting-thread  [i]gnore  [s]kip  [o]pen  [q]uit"
_CORRECTIONS = {"n": "new-task", "e": "existing-thread", "i": "ignore"}


def cmd_review(args: argparse.Namespace) -> int:
    from triage.log.corrections import review_queue
    from triage.log.explain import explain

    done: dict[str, int] = {"accepted": 0, "corrected": 0, "skipped": 0}
    with open_log(args) as store:
        queue = review_queue(store, include_all=args.all, limit=args.limit)
        if not queue:
            print("nothing to review")
            return 0
        for position, decision_id in enumerate(queue, 1):
            entry = explain(store, decision_id)
            print(f"\n[{position}/{len(queue)}] ", end="")
            print_essentials(entry, sys.stdout)
            outcome = _review_one(store, entry, args.author)
            if outcome == "quit":
                break
            done[outcome] += 1
    print("\nreviewed: " + ", ".join(f"{n} {what}" for what, n in done.items()))
    return 0


def _review_one(store: Store, entry: dict[str, Any], author: str | None) -> str:
    """Ask until the user settles this decision; returns accepted, corrected, skipped or quit."""
    while True:
        key = _read_key(f"{_KEYS} ? ")
        if key in ("q", ""):
            return "quit"
        if key == "s":
            return "skipped"
        if key == "o":
            print_explanation(entry, sys.stdout)
        elif key == "a":
            from triage.log.corrections import confirm

            try:
                label = confirm(store, entry["id"], note=None, author=author)
            except TriageError:
                print("nothing to accept: the assistant gave no valid decision; press n, e or i")
                continue
            on_thread = f" (thread {label['thread_id']})" if label["thread_id"] else ""
            print(f"confirmed: {label['decision']}{on_thread}")
            return "accepted"
        elif key in _CORRECTIONS:
            thread = _read_line("thread id: ").strip() or None if key == "e" else None
            try:
                _correct(store, entry, _CORRECTIONS[key], thread, author)
            except TriageError as exc:
                print(exc)
                continue
            return "corrected"
        else:
            print(f"unknown key {key!r}")


def _correct(
    store: Store, entry: dict[str, Any], decision: str, thread: str | None, author: str | None
) -> None:
    from triage.log.corrections import correct

    correct(store, entry["id"], decision, thread_id=thread, note=None, author=author)
    print(f"recorded: {decision}" + (f" (thread {thread})" if thread else ""))


def _read_key(prompt: str) -> str:
    """One key press on a terminal (no Enter needed); the first character of a line otherwise."""
    sys.stdout.write(prompt)
    sys.stdout.flush()
    if not sys.stdin.isatty():
        return sys.stdin.readline()[:1].lower()
    import termios
    import tty

    descriptor = sys.stdin.fileno()
    saved = termios.tcgetattr(descriptor)
    try:
        tty.setcbreak(descriptor)
        key = sys.stdin.read(1)
    finally:
        termios.tcsetattr(descriptor, termios.TCSADRAIN, saved)
    print(key if key.isprintable() else "")
    return "" if key == "\x04" else key.lower()


def _read_line(prompt: str) -> str:
    sys.stdout.write(prompt)
    sys.stdout.flush()
    return sys.stdin.readline()
