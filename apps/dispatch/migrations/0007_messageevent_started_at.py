from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dispatch", "0006_provider_destinations"),
    ]

    operations = [
        migrations.AddField(
            model_name="messageevent",
            name="started_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
