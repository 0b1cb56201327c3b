"""Where the pages may listen, and listening: the pages show other people's mail, so any address
but this machine's own needs a token, and that is settled before a socket is opened."""

from __future__ import annotations

import socket
import sys
from typing import TYPE_CHECKING

from triage.errors import ConfigError
from triage.hosts import is_loopback_host

if TYPE_CHECKING:
    from starlette.applications import Starlette


def check_bind(host: str, token: str | None) -> None:
    """A ConfigError (one line, exit status 2) for an address off this machine without a token."""
    if token is None and not is_loopback_host(host):
        raise ConfigError(
            f"refusing to serve the decision log on {host} without web.token: set one, or listen on 127.0.0.1"
        )


def listening_socket(host: str, port: int) -> socket.socket:
    """Bound and listening (port 0: a free one), so the address printed is the one served."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host.strip("[]"), port), family=family)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve(app: Starlette, sock: socket.socket, *, read_only: bool) -> None:
    """Serve until interrupted (SIGINT, SIGTERM); one line on stderr says where."""
    import uvicorn  # only here: `triage --help` does not pay for it

    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    mode = " (read-only)" if read_only else ""
    where = f"http://{shown}:{port}/"
    print(f"triage web: serving the decision log{mode} at {where}", file=sys.stderr, flush=True)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, server_header=False, proxy_headers=True, lifespan="off"
    )
    uvicorn.Server(config).run(sockets=[sock])
