"""Address validation per channel for the send path, on the accounts app's normalisers, so that
one address has one spelling everywhere (limits, opt-outs, search)."""

from __future__ import annotations

import re
from typing import Any

from apps.accounts.contacts import email_normalized, phone_e164, phone_masked

ADDRESS_KEYS = ("phone", "email", "wechat_openid", "wecom_userid", "push_token")
CHANNEL_ADDRESS_KEY = {"sms": "phone", "email": "email", "wechat": "wechat_openid", "wecom": "wecom_userid", "push": "push_token"}
_OPAQUE = re.compile(r"^[\w\-.:@]{1,255}$")


MAX_ADDRESS = 255  # the message's address column


def normalize_address(channel: str, raw: str) -> tuple[str, str]:
    """(normalized address, "") or ("", why it is not valid)."""
    value = raw.strip()
    if len(value) > MAX_ADDRESS:
        return "", f"The address is longer than {MAX_ADDRESS} characters."
    if channel == "sms":
        phone = phone_e164(value)
        return (phone, "") if phone else ("", f"{value!r} is not a valid phone number.")
    if channel == "email":
        email = email_normalized(value)
        return (email, "") if email else ("", f"{value!r} is not an e-mail address.")
    if channel == "push":
        return (value, "") if value else ("", "The push token is empty.")
    if not _OPAQUE.match(value):
        return "", f"{value!r} is not a valid {channel} id."
    return value, ""


def recipient_address(recipient: Any, channel: str) -> str:
    """The recipient record's address on a channel ("" when it has none)."""
    if channel == "push":
        tokens = recipient.active_push_tokens  # prefetched by recipients_by_user_id
        return tokens[0].token if tokens else ""
    field = CHANNEL_ADDRESS_KEY.get(channel)
    return str(getattr(recipient, field, "") or "") if field else ""


def mask_any(address: str) -> str:
    """`mask_address` where the channel is not at hand: a `+` number as a phone, an `@` address as e-mail."""
    return mask_address("sms" if address.startswith("+") else "email" if "@" in address else "", address)


def mask_address(channel: str, address: str) -> str:
    """For logs and admin lists: phones as +86138****8000, e-mail as a***@example.com."""
    if not address:
        return ""
    if channel == "sms":
        return phone_masked(address)
    if channel == "email" and "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    return address[:4] + "…" if len(address) > 8 else address
