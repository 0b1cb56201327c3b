"""`triage rules suggest`: rules the labels in the log agree on, printed for the config."""

from __future__ import annotations

import argparse

from triage.cli.log import open_log


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = commands.add_parser("rules", help="rules drawn from the log's corrections")
    actions = rules.add_subparsers(required=True, metavar="ACTION")
    suggest = actions.add_parser(
        "suggest", help="print [[routing.rules]] for senders and lists whose labels agree; changes nothing"
    )
    suggest.add_argument("--min", type=int, default=3, help="labels needed, all agreeing (default 3)")
    suggest.set_defaults(handler=cmd_suggest)


def cmd_suggest(args: argparse.Namespace) -> int:
    from triage.errors import TriageError
    from triage.log.suggest import suggest

    if args.min < 1:
        raise TriageError("--min must be at least 1")
    with open_log(args) as store:
        found = suggest(store, at_least=args.min)
    if not found:
        print(f"# no sender or list has {args.min} or more labels that all agree")
        return 0
    print(
        "# paste the rules you want into the [routing] section of your config; rules decide without a run\n"
    )
    print("\n\n".join(suggestion.toml() for suggestion in found))
    return 0
