# The tables these links point at become partitioned (dispatch 0010): a foreign key into a partitioned
# table must name its whole primary key and would stop a partition from being dropped. Like the other
# links of the hot tables (0003), Django keeps them; the database does not check them.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_recipient_pushtoken_preference_and_more"),
        ("dispatch", "0009_platform_cap_rows"),
        ("receipts", "0006_verification_moves_to_verifications"),
    ]

    operations = [
        migrations.AlterField(
            model_name="failover",
            name="original",
            field=models.OneToOneField(
                db_constraint=False,
                on_delete=django.db.models.deletion.CASCADE,
                primary_key=True,
                related_name="+",
                serialize=False,
                to="dispatch.message",
            ),
        ),
        migrations.AlterField(
            model_name="failover",
            name="resend",
            field=models.OneToOneField(
                db_constraint=False, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="dispatch.message"
            ),
        ),
        migrations.AlterField(
            model_name="statuscallback",
            name="account",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="accounts.account",
            ),
        ),
        migrations.AlterField(
            model_name="callbackattempt",
            name="callback",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="attempt_log",
                to="receipts.statuscallback",
            ),
        ),
    ]
