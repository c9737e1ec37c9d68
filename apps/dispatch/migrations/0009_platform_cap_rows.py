from django.db import migrations

# PLATFORM_CAP_DEFAULTS (apps/dispatch/models.py) as shipped: (per hour, per day). Copied, not imported,
# so that a later change of the defaults does not rewrite what this migration did.
ROWS = {"verification": (10, 20), "marketing": (None, 5)}


def add_rows(apps, schema_editor):
    PlatformCap = apps.get_model("dispatch", "PlatformCap")
    for category, (per_hour, per_day) in ROWS.items():
        PlatformCap.objects.get_or_create(category=category, defaults={"per_hour": per_hour, "per_day": per_day})


def remove_rows(apps, schema_editor):
    apps.get_model("dispatch", "PlatformCap").objects.filter(category__in=ROWS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("dispatch", "0008_platformcap"),
    ]

    operations = [migrations.RunPython(add_rows, remove_rows)]
