"""Encryption at rest for secrets we must read back (callback secrets, provider credentials)."""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _derived_key(secret: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"messaging-center", info=b"encryption-at-rest")
    return base64.urlsafe_b64encode(hkdf.derive(secret.encode()))


@functools.cache
def _fernet() -> MultiFernet:
    keys: list[bytes] = []
    for configured in filter(None, (k.strip() for k in settings.ENCRYPTION_KEY.split(","))):
        try:
            Fernet(configured.encode())
        except ValueError:
            raise ImproperlyConfigured(
                "ENCRYPTION_KEY must be Fernet keys (32 url-safe base64 bytes), comma separated."
            ) from None
        keys.append(configured.encode())
    keys.append(_derived_key(settings.SECRET_KEY))
    return MultiFernet([Fernet(k) for k in keys])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured("A stored secret cannot be decrypted: ENCRYPTION_KEY/SECRET_KEY changed.") from None
