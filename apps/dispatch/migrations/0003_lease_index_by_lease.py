# The lease index covers rows holding a lease instead of rows in a leased status; see Message.Meta.
# Built concurrently: messages keep being written while it is replaced.

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("accounts", "0002_recipient_pushtoken_preference_and_more"),
        ("dispatch", "0002_message_needs_reconcile"),
        ("message_templates", "0001_initial"),
    ]

    operations = [
        RemoveIndexConcurrently(model_name="message", name="msg_lease"),
        AddIndexConcurrently(
            model_name="message",
            index=models.Index(condition=models.Q(("lease_until__isnull", False)), fields=["lease_until"], name="msg_lease"),
        ),
    ]
