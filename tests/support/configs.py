"""Write a triage.toml for a test: a mail server (or none), a run server, an SQLite store in the folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol


class MailServer(Protocol):
    """What a config needs of an IMAP server: a private Dovecot or the fake Gmail."""

    port: int
    username: str
    password: str


def write_config(
    directory: Path,
    dovecot: MailServer,
    url: str,
    *,
    langgraph: dict[str, object] | None = None,
    watch: dict[str, object] | None = None,
    routing: dict[str, object] | None = None,
    store: dict[str, object] | None = None,
    accounts: dict[str, MailServer] | None = None,
    **imap: object,
) -> Path:
    """Sections as keyword dicts; a value of None drops that key. `accounts` adds more servers."""
    sections = {
        "imap": {
            "host": "127.0.0.1",
            "port": dovecot.port,
            "tls": "none",
            "username": dovecot.username,
            "password": dovecot.password,
            "timeout_s": 10,
            **imap,
        },
        "langgraph": {"url": url, "max_concurrency": 32, **(langgraph or {})},
        "store": {"url": f"sqlite:///{directory / 'triage.db'}", **(store or {})},
        "watch": {"heartbeat_s": 0.2, **(watch or {})},
        "routing": routing or {},
    }
    for name, server in (accounts or {}).items():
        sections[f"accounts.{name}"] = _imap_section(server, {"timeout_s": 10})
    return _write(directory, sections)


def write_file_config(
    directory: Path,
    url: str,
    *,
    langgraph: dict[str, object] | None = None,
    routing: dict[str, object] | None = None,
    store: dict[str, object] | None = None,
) -> Path:
    """A triage.toml without a mail server, for `backfill --source FILE`: a run server and a store."""
    sections: dict[str, dict[str, object]] = {
        "langgraph": {"url": url, "max_concurrency": 4, **(langgraph or {})},
        "store": {"url": f"sqlite:///{directory / 'triage.db'}", **(store or {})},
        "watch": {"heartbeat_s": 0.2},
        "routing": routing or {},
    }
    return _write(directory, sections)


def _write(directory: Path, sections: dict[str, dict[str, object]]) -> Path:
    """triage.toml in `directory`: each section's keys, those set to None left out."""
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in values.items() if value is not None]
    path = directory / "triage.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _imap_section(server: MailServer, extra: dict[str, object]) -> dict[str, object]:
    return {
        "host": "127.0.0.1",
        "port": server.port,
        "tls": "none",
        "username": server.username,
        "password": server.password,
        **extra,
    }


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {_toml(v)}" for key, v in value.items()) + " }"
    return str(value)
