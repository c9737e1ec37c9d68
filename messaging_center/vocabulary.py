"""The words every app shares: channels, categories, priorities and the category defaults (API.md).

Below apps.accounts and apps.templates, which both use them; no model imports here. `Priority` is also
the list of lanes, highest first: one broker queue each (settings.LANES) and one accepted value of a
send request's `priority`."""

from __future__ import annotations

from django.db import models


class Channel(models.TextChoices):
    SMS = "sms", "SMS"
    WECHAT = "wechat", "WeChat official account"
    WECOM = "wecom", "Enterprise WeChat"
    PUSH = "push", "App push"
    INBOX = "inbox", "In-site inbox"
    EMAIL = "email", "E-mail"


class Category(models.TextChoices):
    VERIFICATION = "verification"
    TRANSACTIONAL = "transactional"
    MARKETING = "marketing"


class Priority(models.TextChoices):
    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    BULK = "bulk"


MINUTE, HOUR, DAY = 60, 3600, 86400

# Category defaults (API.md, Templates and Sending); a template may override each of them.
DEFAULT_PRIORITY = {
    Category.VERIFICATION: Priority.CRITICAL,
    Category.TRANSACTIONAL: Priority.HIGH,
    Category.MARKETING: Priority.BULK,
}
DEFAULT_TTL = {Category.VERIFICATION: 5 * MINUTE, Category.TRANSACTIONAL: HOUR, Category.MARKETING: HOUR}
DEFAULT_DEDUP_WINDOW = {Category.VERIFICATION: 5 * MINUTE, Category.TRANSACTIONAL: 0, Category.MARKETING: HOUR}
# Per account, recipient address and category: at most `limit` messages in any `window` seconds.
DEFAULT_FREQUENCY_LIMITS: dict[str, list[dict[str, int]]] = {
    Category.VERIFICATION: [
        {"limit": 1, "window": MINUTE},
        {"limit": 5, "window": HOUR},
        {"limit": 10, "window": DAY},
    ],
    Category.TRANSACTIONAL: [],
    Category.MARKETING: [{"limit": 3, "window": DAY}],
}
