import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dispatch", "0007_messageevent_started_at"),
    ]

    operations = [
        migrations.CreateModel(
            name="PlatformCap",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "category",
                    models.CharField(
                        choices=[("verification", "verification"), ("marketing", "marketing")], max_length=16, unique=True
                    ),
                ),
                (
                    "per_hour",
                    models.PositiveIntegerField(
                        blank=True,
                        help_text="Messages to one address in any hour, all accounts together; empty = no hourly cap. Keep it above the per-account limits, or one account alone meets it before its own.",
                        null=True,
                        validators=[django.core.validators.MinValueValidator(1)],
                    ),
                ),
                (
                    "per_day",
                    models.PositiveIntegerField(
                        blank=True,
                        help_text="Messages to one address in any 24 hours, all accounts together; empty = no daily cap. Keep it above the per-account limits, or one account alone meets it before its own.",
                        null=True,
                        validators=[django.core.validators.MinValueValidator(1)],
                    ),
                ),
                ("enabled", models.BooleanField(default=True, help_text="Off: only each account's own frequency limits apply.")),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "ordering": ["category"],
            },
        ),
    ]
