"""`triage web`: the decision log in a browser (the `web` extra): log, review, stats, threads."""

from __future__ import annotations

import argparse
import importlib.util

from triage.cli.log import open_log
from triage.errors import TriageError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    web = commands.add_parser("web", help="review the decision log in a browser")
    web.add_argument("--host", help="address to listen on (default: web.host, 127.0.0.1)")
    web.add_argument("--port", type=int, help="port to listen on (default: web.port, 8080; 0: a free one)")
    web.add_argument("--read-only", action="store_true", help="no correction forms; corrections refused")
    web.set_defaults(handler=cmd_web)


def cmd_web(args: argparse.Namespace) -> int:
    from triage.config import load_settings
    from triage.web.server import check_bind, listening_socket, serve

    settings = load_settings(args.config).web
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    token = settings.token.get_secret_value() if settings.token else None
    check_bind(host, token)
    if importlib.util.find_spec("starlette") is None or importlib.util.find_spec("uvicorn") is None:
        raise TriageError("triage web needs the web extra: pip install 'triage[web]'")
    from triage.web.app import create_app

    with open_log(args) as store:
        sock = listening_socket(host, port)
        with sock:
            serve(create_app(store, token=token, read_only=args.read_only), sock, read_only=args.read_only)
    return 0
