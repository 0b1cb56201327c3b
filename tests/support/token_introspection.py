"""An OAuth2 token introspection endpoint (RFC 7662) on loopback, for Dovecot's oauth2 passdb.

Dovecot (``introspection_mode = post``) POSTs ``token=...`` as a form for each XOAUTH2 or
OAUTHBEARER login; this answers ``{"active": true, "username": USER}`` for a token it issued and
``{"active": false}`` for any other, as an authorization server does. It keeps counts, never the
tokens it was shown (the secrets test searches everything for them).

    with TokenIntrospection("testuser") as issuer:
        dovecot = DovecotServer.start(oauth2_url=issuer.url)
        ...  # log in as testuser with issuer.token
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs


class TokenIntrospection:
    """Serves while used as a context manager; `token` is the one valid token, `username`'s."""

    def __init__(self, username: str) -> None:
        self.username = username
        self.token = f"ya29.test-{uuid.uuid4().hex}"  # unique: searched for in everything triage wrote
        self.active = 0  # introspections that found a valid token
        self.inactive = 0  # and those that did not
        self.url = ""
        self._lock = threading.Lock()
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> TokenIntrospection:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                form = parse_qs(self.rfile.read(int(self.headers.get("content-length") or 0)).decode())
                user = issuer.username if form.get("token") == [issuer.token] else None
                with issuer._lock:
                    if user is None:
                        issuer.inactive += 1
                    else:
                        issuer.active += 1
                body = json.dumps({"active": True, "username": user} if user else {"active": False}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the tests read the counts."""

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/introspect"
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="token-introspection", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._http is not None and self._thread is not None:
            self._http.shutdown()
            self._http.server_close()
            self._thread.join(5)
