# The table was made by apps.receipts (receipts_verification); this only moves the model's state here.

import django.db.models.deletion
from django.db import migrations, models

import messaging_center.ids


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("accounts", "0002_recipient_pushtoken_preference_and_more"),
        ("dispatch", "0004_message_tables_without_fk_constraints"),
        ("receipts", "0005_receipt_partial_indexes_apart"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Verification",
                    fields=[
                        ("id", models.UUIDField(default=messaging_center.ids.uuid7, editable=False, primary_key=True, serialize=False)),
                        ("address", models.CharField(max_length=255)),
                        ("template_code", models.CharField(max_length=64)),
                        ("code_hash", models.CharField(max_length=64)),
                        (
                            "state",
                            models.CharField(
                                choices=[("live", "Live"), ("used", "Used"), ("burned", "Burned")], default="live", max_length=8
                            ),
                        ),
                        ("failed_checks", models.PositiveSmallIntegerField(default=0)),
                        ("created_at", models.DateTimeField()),
                        ("expires_at", models.DateTimeField()),
                        ("verified_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "account",
                            models.ForeignKey(
                                db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="accounts.account"
                            ),
                        ),
                        (
                            "message",
                            models.ForeignKey(
                                db_constraint=False,
                                db_index=False,
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="dispatch.message",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "receipts_verification",
                        "indexes": [
                            models.Index(fields=["account", "address", "-created_at"], name="verification_latest"),
                            models.Index(fields=["message"], name="verification_message"),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
