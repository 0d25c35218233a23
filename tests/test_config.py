"""Configuration: validation names file, key and reason; secrets stay secret."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from maild.cli import main
from maild.config import ConfigError, load_config

from .conftest import ROOT

EXAMPLE = ROOT / "config" / "maild.example.toml"


def example_with_secrets(tmp_path: Path) -> Path:
    """The shipped example, with its password files pointed at real files."""
    (tmp_path / "imap.secret").write_text("imap-password-xyz\n")
    (tmp_path / "smtp.secret").write_text("smtp-password-xyz\n")
    text = EXAMPLE.read_text()
    text = text.replace("/etc/maild/imap.secret", str(tmp_path / "imap.secret"))
    text = text.replace("/etc/maild/smtp.secret", str(tmp_path / "smtp.secret"))
    path = tmp_path / "maild.toml"
    path.write_text(text)
    return path


def test_example_configuration_is_valid(tmp_path, capsys):
    path = example_with_secrets(tmp_path)
    cfg = load_config(path)
    assert cfg.service.address == "supporto@consorzio.example"
    assert cfg.mailbox[0].password.get_secret_value() == "imap-password-xyz"
    assert cfg.smtp.password.get_secret_value() == "smtp-password-xyz"
    assert main(["--config", str(path), "check-config"]) == 0
    assert "OK" in capsys.readouterr().out


def test_secrets_never_shown(tmp_path):
    cfg = load_config(example_with_secrets(tmp_path))
    dumped = repr(cfg) + str(cfg) + cfg.model_dump_json()
    assert "imap-password-xyz" not in dumped and "smtp-password-xyz" not in dumped


def _with(tmp_path: Path, old: str, new: str) -> Path:
    path = example_with_secrets(tmp_path)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "key", "reason"),
    [
        ('profile = "PRO"', 'profile = "GOLD"', "ente[0].profile", "MINIMAL"),
        ('security = "ssl"', 'security = "tls"', "mailbox[0].security", "ssl"),
        ('timezone = "Europe/Rome"', 'timezone = "Europe/Roma"', "service.timezone", "time zone"),
        (
            'address = "supporto@consorzio.example"',
            'address = "supporto"',
            "service.address",
            "not an e-mail address",
        ),
        ('closed_days = ["09-29"]', 'closed_days = ["31-09"]', "ente[0].closed_days", "MM-DD"),
        ("poll_interval = 60", "poll_interval = -1", "mailbox[0].poll_interval", "greater than"),
        ('language = "it"', 'language = "it"\ncolour = "blue"', "service.colour", "Extra inputs"),
        (
            "ALTA = 8, MEDIA = 12, BASSA = 16",
            "ALTA = 8, MEDIA = 12",
            "sla.take_charge_hours",
            "BASSA",
        ),
    ],
)
def test_error_names_file_key_and_reason(tmp_path, capsys, old, new, key, reason):
    path = _with(tmp_path, old, new)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and key in message and reason in message, message
    assert main(["--config", str(path), "check-config"]) == 78
    assert key in capsys.readouterr().err


def test_missing_password_file_is_a_startup_error(tmp_path):
    path = _with(tmp_path, str(tmp_path / "imap.secret"), "/nonexistent/imap.secret")
    with pytest.raises(ConfigError, match=r"mailbox\[0\]\.password_file: cannot read"):
        load_config(path)


def test_password_in_the_file_itself_is_refused(tmp_path):
    path = _with(tmp_path, 'username = "supporto"', 'username = "supporto"\npassword = "x"')
    with pytest.raises(ConfigError, match="password_file"):
        load_config(path)


def test_not_toml(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[service\nname = ")
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ": not valid TOML"):
        load_config(path)


def test_credentials_directory(tmp_path, monkeypatch):
    """Under systemd, LoadCredential= puts the secret in $CREDENTIALS_DIRECTORY."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "imap.secret").write_text("from-systemd")
    (creds / "smtp.secret").write_text("smtp-from-systemd")
    text = EXAMPLE.read_text()
    text = text.replace('"/etc/maild/imap.secret"', '"imap.secret"')
    text = text.replace('"/etc/maild/smtp.secret"', '"smtp.secret"')
    path = tmp_path / "conf" / "maild.toml"
    path.parent.mkdir()
    path.write_text(text)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = load_config(path)
    assert cfg.mailbox[0].password.get_secret_value() == "from-systemd"


def test_maild_config_environment_variable(tmp_path, monkeypatch):
    path = example_with_secrets(tmp_path)
    monkeypatch.setenv("MAILD_CONFIG", str(path))
    assert load_config().source == path


def test_example_documents_every_section():
    data = tomllib.loads(EXAMPLE.read_text())
    for section in (
        "service",
        "database",
        "mailbox",
        "smtp",
        "operator",
        "ente",
        "sla",
        "lifecycle",
        "backup_job",
        "backup_rule",
        "backup",
        "logging",
    ):
        assert section in data
