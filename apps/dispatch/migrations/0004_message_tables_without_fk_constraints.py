# The hot tables keep their links without foreign-key constraints in the database (checked per row
# at COMMIT); see the comment on dispatch.Message.account.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_recipient_pushtoken_preference_and_more"),
        ("dispatch", "0003_lease_index_by_lease"),
        ("message_templates", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="message",
            name="account",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="accounts.account",
            ),
        ),
        migrations.AlterField(
            model_name="message",
            name="template",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="message_templates.messagetemplate",
            ),
        ),
        migrations.AlterField(
            model_name="messageevent",
            name="message",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="events",
                to="dispatch.message",
            ),
        ),
    ]
