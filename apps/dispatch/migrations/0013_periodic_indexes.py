# The periodic jobs' partial indexes (issue #21): receipt polling and timeouts read `sent` messages by
# (provider, sent_at, id), verification failover unexpired `sent` codes by expires_at. Plain CREATE INDEX
# (it also works on the partitioned table, per partition), no CONCURRENTLY.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_recipient_pushtoken_preference_and_more'),
        ('dispatch', '0012_search'),
        ('message_templates', '0001_initial'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='message',
            index=models.Index(condition=models.Q(('status', 'sent')), fields=['provider', 'sent_at', 'id'], name='msg_sent_by_provider'),
        ),
        migrations.AddIndex(
            model_name='message',
            index=models.Index(condition=models.Q(('category', 'verification'), ('status', 'sent')), fields=['expires_at'], name='msg_verification_sent'),
        ),
    ]
