"""Attempts rollup (#23): every provider call counted when it is made — by grain (minute, hour, day,
calendar month; UTC) × bucket of the call's time × account × channel × provider × segment × template ×
outcome (`accepted` or a normalized reason, providers.errors.REASONS) × code (of a failed call the
provider's own; of an accepted one `failover_from:<provider>` when the message's previous attempt went
to another provider, else '') —
with the calls and a histogram of their latency (the attempt's claim → the answer). Kept by a
statement-level trigger on the events: an event with a `reason` records a call (finishing, hedged
late answers). `/stats` reads it for `attempts`, `errors` and `success_rate`; the quality metrics,
alerts and dashboard read it too. docs/architecture.md, "Rollups"."""

import django.contrib.postgres.fields
from django.db import migrations, models

GRAINS = (("minute", "1 minute"), ("hour", "1 hour"), ("day", "1 day"), ("month", "1 month"))
BOUNDS = 32  # models.LATENCY_BOUNDS_MS: dispatch_rollup_bucket (0011) gives 1 … 32
KEY = "account_id, grain, bucket, channel, provider, segment, template_code, outcome, code"

_HISTOGRAM = "ARRAY[" + ", ".join(f"count(*) FILTER (WHERE c.latency_at = {i})" for i in range(1, BOUNDS + 1)) + "]::int[]"
_VALUES = ", ".join(f"('{grain}', INTERVAL '{width}')" for grain, width in GRAINS)
_BUCKET = (
    "CASE WHEN g.grain = 'month' THEN date_trunc('month', c.at, 'UTC') "
    "ELSE date_bin(g.width, c.at, TIMESTAMPTZ '2000-01-01 00:00:00+00') END"
)
FUNCTION = f"""CREATE FUNCTION dispatch_attempt_rollup_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO dispatch_attempt_rollup AS r ({KEY}, calls, latency_ms)
    SELECT m.account_id, g.grain, {_BUCKET}, m.channel, c.provider, m.segment, m.template_code, c.reason,
           left(c.code, 64), count(*), {_HISTOGRAM}
    FROM (SELECT e.message_id, e.at, e.provider, e.reason, e.code,
                 dispatch_rollup_bucket(extract(epoch FROM e.at - e.started_at) * 1000) AS latency_at
          FROM new_rows e WHERE e.reason <> '' AND e.provider <> '') c
    JOIN dispatch_message m ON m.id = c.message_id
    CROSS JOIN (VALUES {_VALUES}) AS g(grain, width)
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
    ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9
    ON CONFLICT ({KEY}) DO UPDATE
    SET calls = r.calls + EXCLUDED.calls, latency_ms = dispatch_rollup_add(r.latency_ms, EXCLUDED.latency_ms);
    RETURN NULL;
END $$"""
TRIGGER = (
    "CREATE TRIGGER dispatch_attempt_rollup_inserted AFTER INSERT ON dispatch_messageevent "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION dispatch_attempt_rollup_inserted()"
)
GRAIN_CHOICES = [("minute", "Minute"), ("hour", "Hour"), ("day", "Day"), ("month", "Month"), ("totals", "Day totals")]


class Migration(migrations.Migration):
    dependencies = [("dispatch", "0015_provider_segment_rules")]

    operations = [
        migrations.AddField(
            model_name="messageevent",
            name="reason",
            field=models.CharField(blank=True, db_default="", default="", max_length=32),
        ),
        migrations.CreateModel(
            name="AttemptRollup",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "account_id",
                        "grain",
                        "bucket",
                        "channel",
                        "provider",
                        "segment",
                        "template_code",
                        "outcome",
                        "code",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("account_id", models.UUIDField()),
                ("grain", models.CharField(choices=GRAIN_CHOICES, max_length=6)),
                ("bucket", models.DateTimeField(help_text="The start of the minute, hour, day or month (UTC) of the calls.")),
                ("channel", models.CharField(max_length=16)),
                ("provider", models.CharField(max_length=64)),
                ("segment", models.CharField(max_length=16)),
                ("template_code", models.CharField(max_length=64)),
                ("outcome", models.CharField(help_text="accepted, or why not in every provider's words.", max_length=32)),
                (
                    "code",
                    models.CharField(
                        blank=True,
                        help_text="A failed call: the provider's own code. An accepted one: failover_from:<provider> "
                        "when the message's previous attempt went to another provider.",
                        max_length=64,
                    ),
                ),
                ("calls", models.BigIntegerField(default=0)),
                (
                    "latency_ms",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.IntegerField(),
                        help_text="The attempt's claim → the provider's answer, per bucket of LATENCY_BOUNDS_MS.",
                        size=None,
                    ),
                ),
            ],
            options={
                "db_table": "dispatch_attempt_rollup",
                "indexes": [models.Index(fields=["grain", "bucket"], name="attempt_rollup_time")],
            },
        ),
        # Across accounts by time (the quality metrics, alerts, the dashboard); the key leads with the account.
        migrations.AddIndex(model_name="rollup", index=models.Index(fields=["grain", "bucket"], name="rollup_time")),
        migrations.RunSQL(
            [FUNCTION, TRIGGER],
            [
                "DROP TRIGGER dispatch_attempt_rollup_inserted ON dispatch_messageevent",
                "DROP FUNCTION dispatch_attempt_rollup_inserted()",
            ],
        ),
    ]
