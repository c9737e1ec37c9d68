from __future__ import annotations

from django.apps import AppConfig


class ReceiptsConfig(AppConfig):
    name = "apps.receipts"
    label = "receipts"
    verbose_name = "Receipts and callbacks"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from apps.dispatch import status_hooks
        from apps.dispatch.models import Provider
        from apps.receipts import hooks
        from apps.receipts.intake import SOURCES

        status_hooks.on_reached(hooks.messages_reached)
        status_hooks.on_sent(hooks.messages_sent)

        def forget_sources(**kwargs: object) -> None:
            SOURCES.clear()

        post_save.connect(forget_sources, sender=Provider, weak=False, dispatch_uid="receipt-sources")
        post_delete.connect(forget_sources, sender=Provider, weak=False, dispatch_uid="receipt-sources-deleted")
