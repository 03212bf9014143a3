"""Settings resolve at run time from the environment."""

import pytest

from makenaide_assets import settings


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@127.0.0.1:5432/db", "postgresql+psycopg2://u:p@127.0.0.1:5432/db"),
        ("postgres://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("sqlite:////tmp/ledger.sqlite", "sqlite:////tmp/ledger.sqlite"),
    ],
)
def test_sql_url_uses_the_installed_driver(given: str, expected: str) -> None:
    assert settings.sql_url(given) == expected


def test_defaults_live_under_var(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("MAKENAIDE_VAR", str(tmp_path))
    assert settings.storage_root() == str(tmp_path / "storage")
    assert settings.ledger_url() == f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    assert settings.replay_dir() == str(settings.SAMPLE_REPLAY_DIR)
    monkeypatch.setenv("MAKENAIDE_MODE", "live")
    assert settings.ledger_url() == f"sqlite:///{tmp_path / 'ledger-live.sqlite'}"
    assert settings.ledger_url("paper") == f"sqlite:///{tmp_path / 'ledger-paper.sqlite'}"
    monkeypatch.setenv("MAKENAIDE_STORAGE", "s3://bucket/prefix")
    assert settings.storage_root() == "s3://bucket/prefix"
