# Callback attempts carry their callback's message id, so that they are partitioned by it (dispatch
# 0010) and leave with the message's day.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("receipts", "0007_links_without_constraints")]

    operations = [
        migrations.AddField(model_name="callbackattempt", name="message_id", field=models.UUIDField(null=True)),
        migrations.RunSQL(
            "UPDATE receipts_callbackattempt a SET message_id = c.message_id FROM receipts_statuscallback c "
            "WHERE c.id = a.callback_id AND a.message_id IS NULL",
            migrations.RunSQL.noop,
        ),
        # An attempt whose callback is gone has nothing to show.
        migrations.RunSQL("DELETE FROM receipts_callbackattempt WHERE message_id IS NULL", migrations.RunSQL.noop),
        migrations.AlterField(model_name="callbackattempt", name="message_id", field=models.UUIDField()),
    ]
