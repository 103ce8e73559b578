"""Settings: defaults, every problem reported at once, `.env` and the process environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickq.errors import ConfigError
from tickq.settings import load_settings


def test_defaults_work_with_nothing_configured() -> None:
    s = load_settings({})
    assert (s.port, s.host, s.env, s.log_level, s.shutdown_grace_s) == (
        3011, "127.0.0.1", "development", "INFO", 30.0)
    assert s.data_dir == Path("tickq-data")
    assert s.database_url == "sqlite:///tickq-data/tickq.db"
    assert s.is_development


def test_database_url_defaults_into_the_data_dir() -> None:
    assert load_settings({"TICKQ_DATA_DIR": "/srv/q"}).database_url == "sqlite:////srv/q/tickq.db"
    assert load_settings({"TICKQ_DATA_DIR": "/srv/q", "TICKQ_DATABASE_URL": "memory://"}
                         ).database_url == "memory://"


def test_empty_values_count_as_unset_and_levels_are_case_insensitive() -> None:
    s = load_settings({"PORT": "", "TICKQ_ENV": "", "LOG_LEVEL": "debug"})
    assert (s.port, s.env, s.log_level) == (3011, "development", "DEBUG")


def test_postgresql_urls_are_accepted_and_redacted_for_logs() -> None:
    s = load_settings({"TICKQ_DATABASE_URL": "postgresql://q:hunter2@db:5432/tickq"})
    assert s.database_kind == "postgresql"
    assert s.database_url_redacted == "postgresql://q:***@db:5432/tickq"


def test_every_problem_is_reported_once_naming_its_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"PORT": "70000", "HOST": " ", "TICKQ_ENV": "prod", "LOG_LEVEL": "loud",
                       "TICKQ_SHUTDOWN_GRACE_S": "-1", "TICKQ_DATABASE_URL": "mysql://x/y"})
    lines = str(caught.value).splitlines()
    assert sorted(line.split(":", 1)[0] for line in lines) == sorted([
        "PORT", "TICKQ_ENV", "LOG_LEVEL", "TICKQ_SHUTDOWN_GRACE_S", "TICKQ_DATABASE_URL"])
    assert "PORT: must be a whole number from 1 to 65535 (got '70000')" in lines


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite://", "tickq.db"])
def test_database_urls_must_name_a_backend_and_a_file(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^TICKQ_DATABASE_URL: "):
        load_settings({"TICKQ_DATABASE_URL": url})


def test_production_refuses_a_memory_database() -> None:
    with pytest.raises(ConfigError, match="TICKQ_DATABASE_URL: memory://"):
        load_settings({"TICKQ_ENV": "production", "TICKQ_DATABASE_URL": "memory://"})


def test_settings_are_frozen() -> None:
    s = load_settings({})
    with pytest.raises(ValueError):
        s.port = 1


def test_process_environment_overrides_dotenv(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("PORT=4000\nLOG_LEVEL=WARNING\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PORT", "4001")
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    s = load_settings()
    assert (s.port, s.log_level) == (4001, "WARNING")
