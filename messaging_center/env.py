"""Typed readers for settings that come from the environment.

Every reader fails loudly, naming the variable, so a bad deployment stops at start-up instead of
misbehaving later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None, *, environ: Mapping[str, str] = os.environ) -> str:
    value = environ.get(name)
    if value is None:
        if default is None:
            raise ImproperlyConfigured(f"Environment variable {name} is required but not set.")
        return default
    return value


def env_bool(name: str, default: bool, *, environ: Mapping[str, str] = os.environ) -> bool:
    raw = environ.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"Environment variable {name}={raw!r} is not a boolean (use 1/0, true/false).")


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    environ: Mapping[str, str] = os.environ,
) -> int:
    raw = environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"Environment variable {name}={raw!r} is not an integer.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"Environment variable {name}={value} is below the minimum {minimum}.")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"Environment variable {name}={value} is above the maximum {maximum}.")
    return value


def env_list(name: str, default: list[str], *, environ: Mapping[str, str] = os.environ) -> list[str]:
    raw = environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_url(name: str, schemes: tuple[str, ...], *, environ: Mapping[str, str] = os.environ) -> str | None:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    value = raw.strip()
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in schemes:
        allowed = ", ".join(f"{s}://" for s in schemes)
        raise ImproperlyConfigured(
            f"Environment variable {name} must be a URL starting with {allowed}; got {value.split('://')[0]!r}."
        )
    return value


# What a deployment must give: without them a process would make up a secret key, derive the encryption
# key from it, or start embedded servers of its own, each a single-host trap (README, Production).
PRODUCTION_VARIABLES = ("SECRET_KEY", "ENCRYPTION_KEY", "DATABASE_URL", "REDIS_URL")


def is_dev_run(*, debug: bool, environ: Mapping[str, str] = os.environ) -> bool:
    """`MC_DEV_RUN` when set; otherwise the development run only with DEBUG or a checkout given none of
    the production variables (`make run`, `make test`, `manage.py` beside them on a fresh machine).
    Setting any of them means a deployment, which then needs all of them."""
    configured = any(environ.get(name, "").strip() for name in PRODUCTION_VARIABLES)
    return env_bool("MC_DEV_RUN", debug or not configured, environ=environ)


def require_production_variables(*, environ: Mapping[str, str] = os.environ) -> None:
    """Outside the development run: every production variable is set, or nothing starts."""
    missing = [name for name in PRODUCTION_VARIABLES if not environ.get(name, "").strip()]
    if missing:
        raise ImproperlyConfigured(
            f"Outside the development run these environment variables must be set: {', '.join(missing)} "
            "(no embedded server or generated key is used there; MC_DEV_RUN=1 marks the development run)."
        )
