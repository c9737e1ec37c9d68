from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"
    verbose_name = "Accounts and recipients"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        import apps.accounts.schema  # noqa: F401 - registers the API key's OpenAPI security scheme
        from apps.accounts.authentication import API_KEYS
        from apps.accounts.models import Account, ApiKey

        def forget_keys(**kwargs: object) -> None:
            API_KEYS.clear()

        for model in (Account, ApiKey):
            post_save.connect(forget_keys, sender=model, weak=False, dispatch_uid=f"api-keys-{model.__name__}")
            post_delete.connect(forget_keys, sender=model, weak=False, dispatch_uid=f"api-keys-del-{model.__name__}")
