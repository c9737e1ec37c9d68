"""Secret params (a verification code): stored encrypted, shown masked, decrypted only to send."""

from __future__ import annotations

from collections.abc import Mapping

from messaging_center import crypto

SEALED_PREFIX = "sealed:"
MASK = "******"


def seal_value(value: str) -> str:
    return SEALED_PREFIX + crypto.encrypt(value)


def is_sealed(params: Mapping[str, str]) -> bool:
    return any(isinstance(v, str) and v.startswith(SEALED_PREFIX) for v in params.values())


def unseal(params: Mapping[str, str]) -> dict[str, str]:
    return {k: crypto.decrypt(v.removeprefix(SEALED_PREFIX)) if v.startswith(SEALED_PREFIX) else v for k, v in params.items()}
