"""`triage config`: the effective configuration, secrets masked."""

from __future__ import annotations

import argparse
import json


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    show_config = commands.add_parser("config", help="print the effective configuration, secrets masked")
    show_config.set_defaults(handler=cmd_config)


def cmd_config(args: argparse.Namespace) -> int:
    from triage.config import load_settings, masked

    print(json.dumps(masked(load_settings(args.config)), indent=2))
    return 0
