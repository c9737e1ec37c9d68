"""Production settings (outside the development run) are TLS-ready: `manage.py check --deploy` is
clean, cookies are Secure, HSTS is on, and the default run keeps plain HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from cryptography.fernet import Fernet
from django.conf import settings
from django.db import connection

from tests.settings import BASE_DIR


def _production_env(**extra: str) -> dict[str, str]:
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MC_DEV_RUN", "DEBUG"))}
    return env | {
        "DJANGO_SETTINGS_MODULE": "messaging_center.settings",
        "DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "mc.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://mc.example.com",
        "TRUST_X_FORWARDED_PROTO": "1",
        **extra,
    }


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_check_deploy_is_clean_with_production_settings() -> None:
    result = _manage(_production_env(), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_defaults_are_tls_ready_and_the_dev_run_keeps_http() -> None:
    show = (
        "from django.conf import settings as s;"
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS,"
        " s.SECURE_PROXY_SSL_HEADER, s.CSRF_TRUSTED_ORIGINS, s.CALLBACK_ALLOW_PRIVATE)"
    )
    production = _manage(_production_env(), "shell", "-c", show)
    assert production.stdout.split("\n")[-2] == (
        "True True True 31536000 ('HTTP_X_FORWARDED_PROTO', 'https') ['https://mc.example.com'] False"
    ), production.stderr
    dev_run = _manage(_production_env(MC_DEV_RUN="1", TRUST_X_FORWARDED_PROTO="0"), "shell", "-c", show)
    assert dev_run.stdout.split("\n")[-2] == "False False False 0 None ['https://mc.example.com'] True", dev_run.stderr
