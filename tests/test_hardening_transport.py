"""Size limits and transport: a 50 MB message never loaded whole; no credential sent in clear."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from imapclient.response_parser import parse_fetch_response

from tests.support.cli import run_triage
from tests.support.configs import write_config
from tests.support.dovecot import DovecotServer, make_certs
from tests.support.run_server import FakeRunServer
from tests.support.store_view import outcomes, rows
from triage import __version__
from triage.message import Email, parse_email
from triage.sources.large_messages import first_text_part, stand_in

MB = 1024 * 1024
BASE64_LINE = b"QUFBQUFB" * 9 + b"QUFB\r\n"


def big_message(size: int) -> bytes:
    """A text part and a base64 attachment making up `size` bytes."""
    head = (
        b"From: sender@example.com\r\nTo: support@example.com\r\nSubject: the dataset\r\n"
        b"Message-ID: <big@example.com>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="big"\r\n\r\n--big\r\n'
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Please review the attached dataset =E2=80=93 thanks.\r\n--big\r\n"
        b'Content-Type: application/octet-stream; name="data.bin"\r\n'
        b'Content-Disposition: attachment; filename="data.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    )
    lines = (size - len(head) - 10) // len(BASE64_LINE)
    return head + BASE64_LINE * lines + b"\r\n--big--\r\n"


def small_messages(count: int) -> list[bytes]:
    return [
        b"From: a@example.com\r\nSubject: small %d\r\nMessage-ID: <s%d@example.com>\r\n\r\nhello" % (i, i)
        for i in range(count)
    ]


# Runs `python -m triage ARGS` and prints the child's peak resident set (KiB) as its last stdout line.
_PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run([sys.executable, '-m', 'triage', *sys.argv[1:]])\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(done.returncode)\n"
)


def python_script(cwd: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -c CODE ARGS` with a clean TRIAGE_* environment, as the tests' triage runs get."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def backfill_peak_rss_mb(cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    done = python_script(cwd, _PEAK_RSS, "backfill", "--quiet")
    return done, int(done.stdout.strip().splitlines()[-1]) / 1024


@pytest.mark.integration
def test_a_50_mb_message_is_triaged_from_its_text_part_in_bounded_memory(
    tmp_path: Path, dovecot: DovecotServer
) -> None:
    dovecot.append(small_messages(3))
    with FakeRunServer(["ok"]) as server:
        write_config(tmp_path, dovecot, server.url)
        baseline, baseline_mb = backfill_peak_rss_mb(tmp_path)
        assert baseline.returncode == 0, baseline.stderr
        dovecot.append([big_message(50 * MB), *small_messages(2)])
        done, peak_mb = backfill_peak_rss_mb(tmp_path)
        prompts = {
            body["metadata"]["uid"]: str(body["input"]["messages"][0]["content"]) for body in server.requests
        }
    assert done.returncode == 0, done.stderr
    print(f"peak RSS: baseline {baseline_mb:.1f} MB, with the 50 MB message {peak_mb:.1f} MB")
    assert peak_mb - baseline_mb < 25, (baseline_mb, peak_mb)
    db = tmp_path / "triage.db"
    assert [r[0] for r in outcomes(db).values()] == ["ok"] * 6
    size, warnings = rows(db, "SELECT size, parse_warnings FROM messages WHERE uid = 4")[0]
    assert int(size) < 64 * 1024  # type: ignore[call-overload]
    assert "over imap.max_message_bytes" in str(warnings)
    assert "Please review the attached dataset \u2013 thanks." in prompts[4]  # runs in flight: any order
    assert "over imap.max_message_bytes (10485760)" in done.stderr and "uid 4" in done.stderr


def test_the_stand_in_of_a_large_message_keeps_its_headers_and_text() -> None:
    response = (
        b'1 (BODYSTRUCTURE ((("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "BASE64" 9 1 NIL NIL NIL NIL)'
        b'("TEXT" "PLAIN" ("CHARSET" "iso-8859-1") NIL NIL "8BIT" 5 1 NIL NIL NIL NIL)'
        b' "ALTERNATIVE" ("BOUNDARY" "a") NIL NIL NIL)'
        b'("APPLICATION" "PDF" ("NAME" "x.pdf") NIL NIL "BASE64" 100 NIL NIL NIL NIL)'
        b' "MIXED" ("BOUNDARY" "m") NIL NIL NIL))'
    )
    structure = parse_fetch_response([response])[1][b"BODYSTRUCTURE"]
    part = first_text_part(structure)
    assert part is not None and (part.section, part.charset, part.encoding) == ("1.2", "iso-8859-1", "8bit")
    header = (
        b"From: a@example.com\r\nSubject: big\r\nContent-Type: multipart/mixed;\r\n boundary=x\r\n"
        b"X-Triage-Partial: forged by the sender\r\n"
    )
    raw = stand_in(header, part, b"caf\xe9")
    parsed = parse_email(raw, 4000, partial="52428800 bytes, over imap.max_message_bytes")
    assert isinstance(parsed, Email) and parsed.body == "café" and parsed.subject == "big"
    assert parsed.warnings == ["partial: 52428800 bytes, over imap.max_message_bytes"]
    # Only the source says a message is partial: a header the sender wrote says nothing.
    assert isinstance(whole := parse_email(raw, 4000), Email) and whole.warnings == []


GUARD = """
import socket, sys
def refuse(*args, **kwargs):
    raise OSError("network use blocked by the test")
socket.getaddrinfo = refuse
socket.create_connection = refuse
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
from triage.cli import main
sys.exit(main(sys.argv[1:]))
"""


def guarded_triage(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """triage with every way to open a connection blocked: a refusal must come before any."""
    return python_script(cwd, GUARD, *args)


def _write(cwd: Path, text: str) -> None:
    (cwd / "triage.toml").write_text(text + f'\n[store]\nurl = "sqlite:///{cwd / "t.db"}"\n')


@pytest.mark.integration
def test_plaintext_imap_login_to_a_remote_host_is_refused_before_connecting(tmp_path: Path) -> None:
    imap = '[imap]\nhost = "imap.example.com"\ntls = "none"\nusername = "me"\npassword = "pw"\n'
    _write(tmp_path, imap)
    for command in ("backfill", "watch"):
        refused = guarded_triage(tmp_path, command)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.strip().splitlines()[-1] == (
            'triage: error: imap.tls = "none" would send the password for imap.example.com in clear'
            ' (use "implicit" or "starttls", or set imap.allow_insecure = true)'
        )
        assert "blocked by the test" not in refused.stderr
    _write(tmp_path, imap + "allow_insecure = true\n")
    allowed = guarded_triage(tmp_path, "backfill")
    assert allowed.returncode == 1 and "blocked by the test" in allowed.stderr, allowed.stderr


@pytest.mark.integration
def test_an_api_key_is_never_sent_over_http_to_a_remote_host(tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "1.eml").write_bytes(small_messages(1)[0])
    remote = '[langgraph]\nurl = "http://langgraph.example.com"\napi_key = "k-123"\n'
    _write(tmp_path, remote)
    refused = guarded_triage(tmp_path, "backfill", "--source", str(folder))
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "triage: error: langgraph.url http://langgraph.example.com is plain http: the API key would"
        " cross the network in clear (use https, or set langgraph.allow_insecure = true)"
    ]
    assert "k-123" not in refused.stderr
    _write(tmp_path, remote + "allow_insecure = true\n")
    allowed = guarded_triage(tmp_path, "backfill", "--source", str(folder))
    assert allowed.returncode == 1 and "cannot reach the LangGraph server" in allowed.stderr
    _write(tmp_path, '[langgraph]\nurl = "http://langgraph.example.com"\n')  # no key: nothing secret
    assert "cannot reach" in guarded_triage(tmp_path, "backfill", "--source", str(folder)).stderr


@pytest.mark.integration
def test_a_run_server_over_https_is_trusted_only_through_its_ca(tmp_path: Path) -> None:
    ca = make_certs(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    folder = tmp_path / "mail"
    folder.mkdir()
    for i, raw in enumerate(small_messages(3)):
        (folder / f"{i}.eml").write_bytes(raw)
    with FakeRunServer(tls=tls) as server:
        env = {"TRIAGE_LANGGRAPH__URL": server.url, "TRIAGE_STORE__URL": f"sqlite:///{tmp_path / 't.db'}"}
        untrusted = run_triage("backfill", "--source", str(folder), cwd=tmp_path, env=env)
        assert untrusted.returncode == 1
        assert untrusted.stderr.strip().splitlines() == [
            f"triage: error: cannot reach the LangGraph server at {server.url}: ConnectError:"
            " certificate verify failed: unable to get local issuer certificate"
        ]
        assert server.paths == []
        trusted = run_triage(
            "backfill", "--source", str(folder), cwd=tmp_path, env={**env, "SSL_CERT_FILE": str(ca)}
        )
    assert trusted.returncode == 0, trusted.stderr
    assert sorted(outcomes(tmp_path / "t.db").values()) == [("ok", "new-task", 1)] * 3
    runs = [path for path in server.paths if not path.startswith("/threads/")]
    assert runs == ["/ok", "/runs/wait", "/runs/wait", "/runs/wait"]
    assert len(server.paths) == 7  # and each run's kept thread deleted once its decision was recorded
    assert {h["user-agent"] for h in server.headers} == {f"triage/{__version__}"}


@pytest.mark.integration
def test_a_server_without_starttls_gets_no_plaintext_login(tmp_path: Path, dovecot: DovecotServer) -> None:
    dovecot.append(small_messages(1))
    (dovecot.root / "dovecot.conf").write_text(
        (dovecot.root / "dovecot.conf")
        .read_text()
        .replace("ssl = no", "ssl = no\nimap_capability = IMAP4rev1 IDLE")
    )
    dovecot.restart()
    log = dovecot.root / "dovecot.log"
    logged_before = len(log.read_text())
    write_config(tmp_path, dovecot, "http://127.0.0.1:9", tls="starttls")
    refused = run_triage("backfill", cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"triage: error: IMAP server 127.0.0.1:{dovecot.port} does not offer STARTTLS; refusing to log"
        " in without TLS"
    ]
    assert "Login: user=<testuser>" not in log.read_text()[logged_before:]
    assert json.loads(run_triage("config", cwd=tmp_path).stdout)["imap"]["allow_insecure"] is False
