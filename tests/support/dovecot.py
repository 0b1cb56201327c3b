"""Run a private Dovecot IMAP server on loopback for tests.

Each instance lives in its own world-traversable folder under /tmp (pytest's ``tmp_path`` sits
under a 0700 folder that Dovecot's unprivileged auth process cannot enter), with its own ports,
``base_dir``, ``state_dir`` and ``instance_name``, so several can run side by side.  Dovecot runs
in the foreground as its own process group, which ``stop()`` kills outright.  Written for root
(mail owned by ``nobody:nogroup``), as on the CI and dev machines.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from imapclient import IMAPClient

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"

CONFIG_TEMPLATE = Template("""\
base_dir = $root/run
state_dir = $root/state
instance_name = triage-test-$port
protocols = imap
listen = 127.0.0.1
log_path = $root/dovecot.log
mail_fsync = never
disable_plaintext_auth = no
# Fast failed logins for tests: no 2 s delay (0.5 s remains: the check interval) and no
# per-IP penalty (4-15 s more per failure from anvil-auth-penalty, disabled below by mode 0).
auth_failure_delay = 0
auth_mechanisms = $mechanisms
mail_location = maildir:$root/mail/%u
$ssl
namespace inbox {
  inbox = yes
  separator = /
}
$oauth2_passdb
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $root/users
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$root/mail/%u
}
service imap-login {
  inet_listener imap {
    port = $port
  }
  inet_listener imaps {
    port = $tls_port
  }
}
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
$limits
""")

# Dovecot 2.3's capabilities after login, less NOTIFY: a server without it, for a test.
CAPABILITIES_WITHOUT_NOTIFY = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS "
    "THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS "
    "LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH "
    "LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+"
)

# With `oauth2_url`: XOAUTH2 and OAUTHBEARER logins are checked by Dovecot's oauth2 passdb, which
# POSTs the token to that introspection endpoint (RFC 7662) and takes the user it names; passwords
# still go to the passwd-file passdb.
OAUTH2_PASSDB = """\
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $root/oauth2.conf.ext
}"""
OAUTH2_CONFIG = Template("""\
introspection_mode = post
introspection_url = $url
username_attribute = username
active_attribute = active
active_value = true
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_certs(root: Path) -> Path:
    """Create ``ca.pem`` and a ``server.pem``/``server.key`` signed by it; return the CA path."""
    new = "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
    for args in (
        f"{new} -keyout ca.key -out ca.pem -subj '/CN=triage test CA'"
        " -addext basicConstraints=critical,CA:TRUE"
        " -addext keyUsage=critical,keyCertSign,cRLSign",
        # OpenSSL 3: `req -x509 -CA` signs the new certificate with the CA in one step.
        f"{new} -CA ca.pem -CAkey ca.key -keyout server.key -out server.pem -subj /CN=localhost"
        " -addext subjectAltName=DNS:localhost,IP:127.0.0.1"
        " -addext basicConstraints=CA:FALSE -addext extendedKeyUsage=serverAuth",
    ):
        subprocess.run(["openssl", *shlex.split(args)], cwd=root, check=True, capture_output=True)
    return root / "ca.pem"


def _group(pgid: int) -> list[tuple[int, str, str]]:
    """``(pid, comm, state)`` of each process in process group ``pgid``, read from /proc."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            head, _, tail = (entry / "stat").read_text().rpartition(") ")
        except OSError:  # the process went away
            continue
        state, _ppid, pgrp = tail.split()[:3]
        if int(pgrp) == pgid:
            found.append((int(entry.name), head.partition(" (")[2], state))
    return sorted(found)


@dataclass
class DovecotServer:
    """A running private Dovecot: ``start()`` it, ``close()`` it (or use ``with``)."""

    root: Path
    port: int
    tls_port: int | None
    ca_file: Path | None
    username: str = "testuser"
    password: str = "testpass"
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @classmethod
    def start(
        cls,
        *,
        tls: bool = False,
        oauth2_url: str | None = None,
        max_connections: int | None = None,
        notify: bool = True,
        timeout: float = 10.0,
    ) -> DovecotServer:
        """Write a config into a fresh folder, start Dovecot and wait for its greeting(s).

        `oauth2_url` offers XOAUTH2 and OAUTHBEARER, checked by that token introspection URL.
        `max_connections` replaces Dovecot's limit per user and address (10); `notify=False` takes
        NOTIFY off the capabilities it offers."""
        root = Path(tempfile.mkdtemp(prefix="dovecot-", dir="/tmp"))
        server = cls(root, _free_port(), _free_port() if tls else None, None)
        atexit.register(server.close)  # Dovecot would outlive a test run that forgets close()
        try:
            root.chmod(0o755)
            (root / "mail").mkdir()
            shutil.chown(root / "mail", "nobody", "nogroup")
            (root / "users").write_text(f"{server.username}:{{PLAIN}}{server.password}\n")
            ssl_conf = "ssl = no"
            if tls:
                server.ca_file = make_certs(root)
                ssl_conf = f"ssl = yes\nssl_cert = <{root}/server.pem\nssl_key = <{root}/server.key"
            mechanisms, oauth2_passdb = "plain login", ""
            if oauth2_url is not None:
                (root / "oauth2.conf.ext").write_text(OAUTH2_CONFIG.substitute(url=oauth2_url))
                mechanisms, oauth2_passdb = (
                    "plain login xoauth2 oauthbearer",
                    Template(OAUTH2_PASSDB).substitute(root=root),
                )
            limits = [f"mail_max_userip_connections = {max_connections}"] if max_connections else []
            limits += [] if notify else [f"imap_capability = {CAPABILITIES_WITHOUT_NOTIFY}"]
            conf = dict(
                limits="protocol imap {\n" + "\n".join(limits) + "\n}" if limits else "",
                root=root,
                port=server.port,
                tls_port=server.tls_port or 0,
                ssl=ssl_conf,
                mechanisms=mechanisms,
                oauth2_passdb=oauth2_passdb,
            )
            (root / "dovecot.conf").write_text(CONFIG_TEMPLATE.substitute(conf))
            server._launch(timeout)
        except BaseException:
            server.close()
            raise
        return server

    def _launch(self, timeout: float) -> None:
        with open(self.root / "dovecot.out", "ab") as out:
            cmd = [DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")]
            self._proc = subprocess.Popen(cmd, stdout=out, stderr=out, start_new_session=True)
        deadline = time.monotonic() + timeout
        self._wait_greeting(self.port, None, deadline)
        if self.tls_port is not None:
            ctx = ssl.create_default_context(cafile=str(self.ca_file))
            self._wait_greeting(self.tls_port, ctx, deadline)

    def _wait_greeting(self, port: int, ctx: ssl.SSLContext | None, deadline: float) -> None:
        """Poll until ``* OK`` arrives on ``port``; raise with the log tail on exit or timeout."""
        last: object = None
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                last = f"dovecot exited with {self._proc and self._proc.returncode}"
                break
            try:
                with (
                    socket.create_connection(("127.0.0.1", port), timeout=1.0) as raw,
                    ctx.wrap_socket(raw, server_hostname="localhost") if ctx else raw as sock,
                    sock.makefile("rb") as greeting,
                ):
                    line = greeting.readline()
                if line.startswith(b"* OK"):
                    return
                last = line
            except OSError as e:  # refused until the listener is up; ssl.SSLError included
                last = e
            time.sleep(0.005)
        tail = "".join(
            (self.root / name).read_text(errors="replace")[-3000:]
            for name in ("dovecot.out", "dovecot.log")
            if (self.root / name).exists()
        )
        self.stop()
        raise RuntimeError(f"Dovecot gave no greeting on port {port} ({last!r}); log:\n{tail}")

    def stop(self) -> None:
        """Kill Dovecot's whole process group (master, login and session processes); idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # The children are reparented to init and die asynchronously; wait until none is left
        # alive (zombies hold no sockets), so a restart can bind the same ports again.
        deadline = time.monotonic() + 5.0
        while any(st != "Z" for _, _, st in _group(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.001)

    def restart(self, timeout: float = 10.0) -> None:
        """Stop, then start again on the same ports and folders (mail and UIDVALIDITY persist)."""
        self.stop()
        self._launch(timeout)

    def close(self) -> None:
        """Stop the server and remove its folder."""
        atexit.unregister(self.close)
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> DovecotServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def client(self) -> IMAPClient:
        """A client logged in on the plain port (for test setup; the caller logs out)."""
        c = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        c.login(self.username, self.password)
        return c

    def append(self, raw_messages: list[bytes], mailbox: str = "INBOX") -> None:
        """Append raw RFC 5322 messages over one connection, in one MULTIAPPEND when offered."""
        if not raw_messages:
            return
        with self.client() as c:
            if c.has_capability("MULTIAPPEND"):
                c.multiappend(mailbox, raw_messages)
            else:
                for msg in raw_messages:
                    c.append(mailbox, msg)

    def create_mailbox(self, name: str) -> None:
        """Create a mailbox (``/`` is the hierarchy separator: ``"Triage/Later"``)."""
        with self.client() as c:
            c.create_folder(name)

    def session_pids(self) -> list[int]:
        """PIDs of this instance's live ``imap`` session processes (to kill a session in a test)."""
        if self._proc is None:
            return []
        group = _group(self._proc.pid)
        return [pid for pid, comm, state in group if comm == "imap" and state != "Z"]
