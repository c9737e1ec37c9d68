from __future__ import annotations

from django.apps import AppConfig


class DispatchConfig(AppConfig):
    name = "apps.dispatch"
    label = "dispatch"
    verbose_name = "Dispatch"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_migrate, post_save

        from apps.dispatch import checks  # noqa: F401 - registers the system checks
        from apps.dispatch.accept.templates import TEMPLATES
        from apps.dispatch.delivery.choice import TEMPLATES_BY_ID
        from apps.dispatch.models import PlatformCap, Provider, ProviderPrice, ProviderSegmentRule
        from apps.dispatch.policy.platform_caps import CAPS
        from apps.dispatch.providers import template_id_format
        from apps.dispatch.routing.routes import providers_changed
        from apps.dispatch.routing.state import ProviderStateCollector
        from apps.templates.models import MessageTemplate
        from apps.templates.services import provider_id_format_register
        from messaging_center import metrics, partitions

        provider_id_format_register(template_id_format)
        metrics.register_scrape_collector(ProviderStateCollector())

        def forget_templates(**kwargs: object) -> None:
            TEMPLATES.clear()
            TEMPLATES_BY_ID.clear()

        post_save.connect(forget_templates, sender=MessageTemplate, weak=False, dispatch_uid="send-templates")
        post_delete.connect(forget_templates, sender=MessageTemplate, weak=False, dispatch_uid="send-templates-del")

        def forget_caps(**kwargs: object) -> None:
            CAPS.clear()

        post_save.connect(forget_caps, sender=PlatformCap, weak=False, dispatch_uid="platform-caps")
        post_delete.connect(forget_caps, sender=PlatformCap, weak=False, dispatch_uid="platform-caps-del")

        def provider_saved(**kwargs: object) -> None:
            providers_changed()

        # Rules and prices are read with the provider rows: the same token tells workers to re-read them.
        for model in (Provider, ProviderSegmentRule, ProviderPrice):
            post_save.connect(provider_saved, sender=model, weak=False, dispatch_uid=f"providers-changed-{model.__name__}")
            post_delete.connect(provider_saved, sender=model, weak=False, dispatch_uid=f"providers-deleted-{model.__name__}")

        def make_partitions(using: str = "default", **kwargs: object) -> None:
            """Every `migrate` (the default run and the suite run it at start) makes the next days'
            partitions; the hourly retention job does the same in a running service."""
            from django.db import connections
            from django.utils import timezone

            with connections[using].cursor() as wrapper:
                partitions.ensure_partitions(wrapper.cursor, now=timezone.now())

        post_migrate.connect(make_partitions, sender=self, weak=False, dispatch_uid="make-partitions")
