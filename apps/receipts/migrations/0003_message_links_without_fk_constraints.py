# The hot tables keep their links without foreign-key constraints in the database (checked per row
# at COMMIT); see the comment on dispatch.Message.account.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dispatch", "0004_message_tables_without_fk_constraints"),
        ("receipts", "0002_receipt_unique_per_number"),
    ]

    operations = [
        migrations.AlterField(
            model_name="providerreceipt",
            name="message",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="dispatch.message",
            ),
        ),
        migrations.AlterField(
            model_name="statuscallback",
            name="message",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="dispatch.message",
            ),
        ),
        migrations.AlterField(
            model_name="verification",
            name="message",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="dispatch.message",
            ),
        ),
    ]
