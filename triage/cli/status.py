"""`triage status`: per watched mailbox, which daemon holds it and what that daemon last said."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import TYPE_CHECKING

from triage.clock import utc_now

if TYPE_CHECKING:
    from triage.store.leases import WatcherStatus


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = commands.add_parser("status", help="per watched mailbox: connection, backlog, failures")
    status.add_argument("--json", action="store_true", help="one JSON object per mailbox")
    status.set_defaults(handler=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    from triage.config import load_settings
    from triage.store import leases, processes
    from triage.store.decisions import Store

    settings = load_settings(args.config)
    with Store.existing(settings.store.url) as store:
        found = leases.statuses(store) if store is not None else []
        limits = processes.run_concurrency(store) if store is not None and found else {}
    now = utc_now()
    stale_after = settings.watch.lease_s
    for status in found:
        alive = status.state != "stopped" and (now - status.heartbeat_at).total_seconds() <= stale_after
        runs = limits.get(status.owner or "") if alive else None
        if args.json:
            print(json.dumps({**_as_dict(status), "alive": alive, "run_concurrency": runs}, default=str))
        else:
            state = status.state if alive or status.state == "stopped" else f"stale ({status.state})"
            link = "connected" if status.connected and alive else "offline"
            held = f"held by {status.owner}" if alive else "held by nobody"
            print(
                f"{status.mailbox:<20} {state:<14} {link:<10} {held}  "
                f"idle since {_hm(status.idle_since)}  last uid {status.last_seen_uid or '-'}  "
                f"last decision {_hm(status.last_decision_at)}  backlog {status.backlog}  "
                f"failures {status.failures}"
                + (f"  runs in flight up to {runs}" if runs is not None else "")
                + (f"  ({status.last_error})" if status.last_error else "")
            )
    if not found and not args.json:
        print("no mailbox has been watched with this store")
    return 0


def _as_dict(status: WatcherStatus) -> dict[str, object]:
    return {name: getattr(status, name) for name in status.__slots__}


def _hm(when: datetime | None) -> str:
    return "-" if when is None else f"{when:%Y-%m-%d %H:%M:%S}"
