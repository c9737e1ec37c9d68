"""The alert rules a fresh installation starts with; operators tune or disable them in admin."""

from django.db import migrations

# name, kind, scope, threshold, window_minutes, min_volume
DEFAULT_RULES = [
    ("Delivery rate drop", "delivery_rate_drop", "", 0.2, 3, 20),
    ("Submit-error spike", "submit_errors", "", 0.5, 1, 10),
    ("Receipt silence", "receipt_silence", "", 0.05, 10, 10),
    ("Oldest queued: critical lane", "queue_age", "critical", 30, 0, 0),
    ("Oldest queued: high lane", "queue_age", "high", 120, 0, 0),
    ("Oldest queued: normal lane", "queue_age", "normal", 600, 0, 0),
    ("Oldest queued: bulk lane", "queue_age", "bulk", 3600, 0, 0),
    ("Status callback backlog", "callback_backlog", "", 1000, 5, 0),
    ("Verification fill-rate drop", "verification_fill_drop", "", 0.3, 30, 30),
    ("Account near its quota", "quota_near", "", 0.9, 0, 0),
    ("Provider demoted for a segment", "provider_demoted", "", 0, 0, 0),
]


def add_rules(apps, schema_editor):
    AlertRule = apps.get_model("alerts", "AlertRule")
    for name, kind, scope, threshold, window, volume in DEFAULT_RULES:
        AlertRule.objects.get_or_create(
            name=name, defaults={"kind": kind, "scope": scope, "threshold": threshold, "window_minutes": window, "min_volume": volume}
        )


def remove_rules(apps, schema_editor):
    apps.get_model("alerts", "AlertRule").objects.filter(name__in=[rule[0] for rule in DEFAULT_RULES]).delete()


class Migration(migrations.Migration):
    dependencies = [("alerts", "0001_initial")]

    operations = [migrations.RunPython(add_rules, remove_rules)]
