# Verification codes have an app of their own (apps.verifications); the table stays as it is.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("receipts", "0005_receipt_partial_indexes_apart"),
        ("verifications", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="Verification")], database_operations=[]),
    ]
