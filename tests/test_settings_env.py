"""Settings come from the environment; bad values stop the start naming the variable. Outside the
development run a process refuses to start without SECRET_KEY, ENCRYPTION_KEY, DATABASE_URL and
REDIS_URL rather than make up a key or start embedded servers of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.db import connection

from messaging_center.env import PRODUCTION_VARIABLES

BASE_DIR = Path(__file__).resolve().parent.parent
PROBE = (
    "import django; django.setup(); from django.conf import settings; from django.db import connection; "
    "print(connection.settings_dict['NAME'], connection.settings_dict['PORT'], settings.REDIS_URL)"
)


def _run(env: dict[str, str], code: str = PROBE) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    full_env |= {"DJANGO_SETTINGS_MODULE": "messaging_center.settings", **env}
    return subprocess.run([sys.executable, "-c", code], env=full_env, cwd=BASE_DIR, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("DEBUG", "perhaps"),
        ("DATABASE_URL", "mysql://localhost/db"),
        ("REDIS_URL", "memcached://localhost"),
        ("SECRET_KEY", "short"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_bad_environment_value_fails_naming_the_variable(name: str, value: str) -> None:
    result = _run({name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert name in result.stderr.splitlines()[-1]


@pytest.mark.django_db
def test_given_urls_are_used_instead_of_the_embedded_servers(tmp_path: Path) -> None:
    settings = connection.settings_dict
    database_url = f"postgresql://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
    redis_url = "redis://127.0.0.1:6399/5"
    result = _run({"DATABASE_URL": database_url, "REDIS_URL": redis_url, "MC_DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [settings["NAME"], str(settings["PORT"]), redis_url]
    assert not (tmp_path / "data" / "postgres").exists()
    assert not (tmp_path / "data" / "redis").exists()


def _database_url() -> str:
    db = connection.settings_dict
    return f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def _production(data_dir: Path, **given: str) -> subprocess.CompletedProcess[str]:
    """`manage.py check` as a deployment starts it: none of the test run's development settings."""
    inherited = {k: v for k, v in os.environ.items() if k not in {*PRODUCTION_VARIABLES, "MC_DEV_RUN", "DEBUG"}}
    env = inherited | {"DJANGO_SETTINGS_MODULE": "messaging_center.settings", "MC_DATA_DIR": str(data_dir), **given}
    return subprocess.run(
        [sys.executable, "manage.py", "check"], env=env, cwd=BASE_DIR, capture_output=True, text=True, timeout=60
    )


def _nothing_made_up(data_dir: Path) -> bool:
    return not any((data_dir / name).exists() for name in ("postgres", "redis", "secret_key"))


def test_production_without_its_variables_refuses_to_start_naming_each(tmp_path: Path) -> None:
    result = _production(tmp_path / "data", MC_DEV_RUN="0")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: Outside the development run"), result.stderr
    assert all(name in last for name in PRODUCTION_VARIABLES), last
    assert _nothing_made_up(tmp_path / "data")


def test_a_partly_configured_deployment_is_production_and_names_what_is_missing(tmp_path: Path) -> None:
    """A host given DATABASE_URL but not REDIS_URL used to start an embedded Redis of its own, quietly."""
    result = _production(tmp_path / "data", DATABASE_URL=_database_url())
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "SECRET_KEY, ENCRYPTION_KEY, REDIS_URL" in last and "DATABASE_URL" not in last, last
    assert _nothing_made_up(tmp_path / "data")


@pytest.mark.django_db
def test_production_with_its_variables_starts(tmp_path: Path) -> None:
    result = _production(
        tmp_path / "data",
        MC_DEV_RUN="0",
        SECRET_KEY="k" * 50,
        ENCRYPTION_KEY=Fernet.generate_key().decode(),
        DATABASE_URL=_database_url(),
        REDIS_URL=django_settings.REDIS_URL,
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
    assert _nothing_made_up(tmp_path / "data")


def test_a_fresh_checkout_with_nothing_set_is_the_development_run() -> None:
    """What the quickstart's `manage.py create_account` beside `make run` needs: the embedded servers."""
    inherited = {k: v for k, v in os.environ.items() if k not in {*PRODUCTION_VARIABLES, "MC_DEV_RUN", "DEBUG"}}
    code = "import django; django.setup(); from django.conf import settings; print(settings.DEV_RUN)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=inherited | {"DJANGO_SETTINGS_MODULE": "messaging_center.settings"},
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True"]


def test_the_launcher_told_it_is_not_the_development_run_starts_no_embedded_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {*PRODUCTION_VARIABLES, "DEBUG"}}
    env |= {"MC_DEV_RUN": "0", "MC_DATA_DIR": str(tmp_path / "data"), "REDIS_URL": "redis://127.0.0.1:6399/0"}
    result = subprocess.run(
        [sys.executable, "-m", "devstack.launcher"], env=env, cwd=BASE_DIR, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "must be set: SECRET_KEY, ENCRYPTION_KEY, DATABASE_URL" in result.stderr, result.stderr
    assert not (tmp_path / "data" / "postgres").exists()
