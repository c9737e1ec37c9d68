# Messages, their events, status callbacks and their attempts, and provider receipts become tables
# partitioned by day (messaging_center/partitions.py says how and why). Every existing row is kept:
# the old table becomes the partition of everything up to the end of the day of the upgrade, its
# indexes attached as they are. README "Upgrading a large installation" has the steps for big tables.

from django.db import migrations
from django.utils import timezone

from messaging_center import partitions


def forward(apps, schema_editor):
    now = timezone.now()
    with schema_editor.connection.connection.cursor() as cursor:
        for table in partitions.TABLES:
            partitions.convert(cursor, table, now=now)


def backward(apps, schema_editor):
    with schema_editor.connection.connection.cursor() as cursor:
        for table in reversed(partitions.TABLES):
            partitions.unconvert(cursor, table)


class Migration(migrations.Migration):
    dependencies = [
        ("dispatch", "0009_platform_cap_rows"),
        ("receipts", "0008_callbackattempt_message"),
    ]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
