from __future__ import annotations

from django.apps import AppConfig


class TemplatesConfig(AppConfig):
    name = "apps.templates"
    label = "message_templates"
    verbose_name = "Message templates"
