"""Configuration: TOML file, environment overrides, one clear line for bad values, masked secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_triage


@pytest.mark.integration
def test_file_then_environment_override_and_masking(tmp_path: Path) -> None:
    (tmp_path / "triage.toml").write_text(
        '[imap]\nhost = "mail.example.com"\nusername = "me"\npassword = "s3cret-file-pass"\n'
        'mailboxes = ["INBOX", "Support"]\n[langgraph]\napi_key = "lg-key-123"\nmax_concurrency = 4\n'
    )
    done = run_triage(
        "config",
        cwd=tmp_path,
        env={"TRIAGE_LANGGRAPH__MAX_CONCURRENCY": "12", "TRIAGE_STORE__URL": "sqlite:///other.db"},
    )
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    assert config["imap"]["host"] == "mail.example.com"
    assert config["imap"]["mailboxes"] == ["INBOX", "Support"]
    assert config["langgraph"]["max_concurrency"] == 12
    assert config["store"]["url"] == "sqlite:///other.db"
    assert config["imap"]["password"] == "********" and config["langgraph"]["api_key"] == "********"
    assert "s3cret-file-pass" not in done.stdout + done.stderr and "lg-key-123" not in done.stdout


@pytest.mark.integration
def test_config_path_from_option_and_environment(tmp_path: Path) -> None:
    custom = tmp_path / "custom.toml"
    custom.write_text('[langgraph]\nassistant_id = "triager"\n')
    by_option = run_triage("--config", str(custom), "config", cwd=tmp_path)
    by_env = run_triage("config", cwd=tmp_path, env={"TRIAGE_CONFIG": str(custom)})
    for done in (by_option, by_env):
        assert json.loads(done.stdout)["langgraph"]["assistant_id"] == "triager"
    defaults = json.loads(run_triage("config", cwd=tmp_path).stdout)
    assert defaults["langgraph"]["url"] == "http://127.0.0.1:2024"
    assert defaults["imap"]["fetch_batch"] == 100 and defaults["imap"]["tls"] == "implicit"


def _one_error_line(done: object, *needles: str) -> None:
    assert done.returncode == 2, done.stderr  # type: ignore[attr-defined]
    lines = done.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr  # type: ignore[attr-defined]
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.integration
def test_bad_values_end_in_one_line_naming_the_key(tmp_path: Path) -> None:
    cases = {
        '[imap]\nport = "lots"\n': ("imap.port",),
        '[imap]\ntls = "maybe"\n': ("imap.tls",),
        '[imap]\nhots = "x"\n': ("imap.hots", "Extra inputs"),
        '[imap]\npassword = "p-secret-1"\npassword_command = "echo x"\n': ("imap", "only one of"),
        '[langgraph]\nurl = "ftp://x"\n': ("langgraph", "http"),
        '[langgraph]\non_completion = "never"\n': ("langgraph.on_completion",),
        "[langgraph]\nmetadata = { x = nan }\n": ("langgraph.metadata", "NaN and infinity"),
        "[langgraph]\nconfig = { when = 2026-11-29 }\n": ("langgraph.config", "type date is not JSON"),
        "[imap\n": ("not valid TOML",),
    }
    for text, needles in cases.items():
        (tmp_path / "triage.toml").write_text(text)
        done = run_triage("config", cwd=tmp_path)
        _one_error_line(done, *needles)
        assert "p-secret-1" not in done.stderr
    _one_error_line(run_triage("--config", "missing.toml", "config", cwd=tmp_path), "not found")
    (tmp_path / "triage.toml").unlink()
    _one_error_line(
        run_triage("config", cwd=tmp_path, env={"TRIAGE_IMAP__FETCH_BATCH": "0"}), "imap.fetch_batch"
    )


@pytest.mark.integration
def test_backfill_without_imap_host_is_a_config_error(tmp_path: Path) -> None:
    _one_error_line(run_triage("backfill", cwd=tmp_path), "imap.host")


def test_every_setting_is_documented_in_the_example() -> None:
    from triage.config import Settings

    example = (Path(__file__).parent.parent / "config.example.toml").read_text()
    assert "# [accounts.support]" in example  # more accounts take the [imap] keys
    for key in ("move_to", "add_flags", "mark_seen", "gmail_labels"):
        assert f"# {key} =" in example, f"routing.actions.*.{key}"
    for section, model in Settings.model_fields.items():
        if section == "accounts":
            continue
        assert f"[{section}]" in example
        for key in model.annotation.model_fields:  # type: ignore[union-attr]
            documented = (
                f"\n{key} =" in example or f"\n# {key} =" in example or f"[{section}.{key}." in example
            )
            assert documented, f"{section}.{key}"
