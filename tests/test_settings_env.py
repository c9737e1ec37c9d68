"""Settings come from the environment; bad values stop the start naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

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
