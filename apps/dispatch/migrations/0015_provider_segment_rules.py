"""Routing on delivery data and cost (#23): operators' pin/exclude rules per provider and destination
segment, providers' prices, each message's cost (set when it is sent) and its sum in the rollups,
and the index through which the routing quality job reads the last minutes of the rollups.

The rollup trigger functions are re-created (CREATE OR REPLACE) with 0011's generators and 0014's
grains, summing `cost` beside 0011's counters; backwards, 0014's functions come back. No backfill:
every message stored before has cost 0."""

import importlib

import django.db.models.deletion
from django.db import migrations, models

rollups = importlib.import_module("apps.dispatch.migrations.0011_rollups")
months = importlib.import_module("apps.dispatch.migrations.0014_rollup_months")

COUNTERS = (*rollups.COUNTERS, "cost")


def _functions(counters):
    return [
        rollups._trigger_function(
            trigger,
            changes,
            rollups.unchanged(counters) if trigger == "dispatch_rollup_updated" else "",
            months.COARSER,
            "CREATE OR REPLACE",
            counters,
        )
        for trigger, _table, _event, _transitions, changes in rollups.triggers(counters)
    ]


class Migration(migrations.Migration):
    dependencies = [("dispatch", "0014_rollup_months")]

    operations = [
        migrations.AddField(
            model_name="message",
            name="cost",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="rollup",
            name="cost",
            field=models.BigIntegerField(
                db_default=0, default=0, help_text="What the providers charged, micro-units of COST_CURRENCY."
            ),
        ),
        migrations.CreateModel(
            name="ProviderSegmentRule",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "segment",
                    models.CharField(
                        help_text="A destination segment: CN-mobile, CN-unicom, CN-telecom, CN-other, US, GB, …",
                        max_length=16,
                    ),
                ),
                (
                    "action",
                    models.CharField(
                        choices=[
                            ("pin", "pin (only this provider, while its circuit is closed)"),
                            ("exclude", "exclude (never this provider)"),
                        ],
                        max_length=8,
                    ),
                ),
                ("note", models.CharField(blank=True, default="", help_text="Why (seen by other operators).", max_length=255)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "provider",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="segment_rules", to="dispatch.provider"
                    ),
                ),
            ],
            options={
                "ordering": ["segment", "provider"],
                "constraints": [models.UniqueConstraint(fields=("provider", "segment"), name="provider_segment_rule_unique")],
            },
        ),
        migrations.CreateModel(
            name="ProviderPrice",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "segment",
                    models.CharField(default="*", help_text="A destination segment, or * for the default.", max_length=16),
                ),
                (
                    "price",
                    models.PositiveBigIntegerField(
                        help_text="Micro-units of the cost currency per SMS segment (45000 = 0.045)."
                    ),
                ),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "provider",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="prices", to="dispatch.provider"
                    ),
                ),
            ],
            options={
                "ordering": ["provider", "segment"],
                "constraints": [models.UniqueConstraint(fields=("provider", "segment"), name="provider_price_unique")],
            },
        ),
        migrations.RunSQL(_functions(COUNTERS), _functions(rollups.COUNTERS)),
    ]
