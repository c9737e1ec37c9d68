"""Compact JWTs (RFC 7515/7519) signed with RS256 (Google service accounts) or ES256 (APNs), on
`cryptography`; `verify` serves the simulator, which checks them as the providers do.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

Algorithm = Literal["RS256", "ES256"]
# ES256 signatures are r || s, each a 32-byte big-endian integer (RFC 7518 §3.4), not DER.
ES256_PART = 32


class InvalidKeyError(ValueError):
    """A private key that is not a PEM key of the algorithm's type."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def load_private_key(pem: str, alg: Algorithm) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as error:
        raise InvalidKeyError(f"not a PEM private key: {error}") from error
    if alg == "RS256" and isinstance(key, rsa.RSAPrivateKey):
        return key
    if alg == "ES256" and isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise InvalidKeyError(f"{alg} needs an {'RSA' if alg == 'RS256' else 'EC P-256'} private key")


def sign(claims: dict[str, Any], private_key_pem: str, *, alg: Algorithm, kid: str | None = None) -> str:
    header = {"alg": alg, "typ": "JWT"} | ({"kid": kid} if kid else {})
    signing_input = f"{_json(header)}.{_json(claims)}".encode()
    key = load_private_key(private_key_pem, alg)
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(ES256_PART, "big") + s.to_bytes(ES256_PART, "big")
    return f"{signing_input.decode()}.{b64url(signature)}"


def verify(token: str, public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(header, claims) when `token` is signed by `public_key` with the algorithm its header names."""
    try:
        header_part, claims_part, signature_part = token.split(".")
        header = json.loads(b64url_decode(header_part))
        claims = json.loads(b64url_decode(claims_part))
        signature = b64url_decode(signature_part)
    except ValueError:
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    signing_input = f"{header_part}.{claims_part}".encode()
    try:
        if header.get("alg") == "RS256" and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        elif header.get("alg") == "ES256" and isinstance(public_key, ec.EllipticCurvePublicKey):
            if len(signature) != 2 * ES256_PART:
                return None
            der = encode_dss_signature(
                int.from_bytes(signature[:ES256_PART], "big"), int.from_bytes(signature[ES256_PART:], "big")
            )
            public_key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
        else:
            return None
    except InvalidSignature:
        return None
    return header, claims
