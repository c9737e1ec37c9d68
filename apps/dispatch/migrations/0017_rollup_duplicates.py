"""Duplicates to a person in the attempts rollup (#22): a `duplicate_send` event — a delivered report
from the provider of an earlier attempt whose outcome was unknown, or a hedged call accepted late —
adds one to `duplicates` of its provider's row. Such an event from a report records no call
(`calls` 0, outcome `duplicate_send`); a late accepted call is a call and a duplicate. `/stats` gives
them per group as `duplicates`. Counted from this migration on: the events before it are not read
again (that would scan every event partition)."""

import importlib

from django.db import migrations, models

from apps.dispatch.events import DUPLICATE_SEND

ATTEMPTS = importlib.import_module("apps.dispatch.migrations.0016_attempt_rollup")

FUNCTION = f"""CREATE OR REPLACE FUNCTION dispatch_attempt_rollup_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO dispatch_attempt_rollup AS r ({ATTEMPTS.KEY}, calls, duplicates, latency_ms)
    SELECT m.account_id, g.grain, {ATTEMPTS._BUCKET}, m.channel, c.provider, m.segment, m.template_code, c.outcome,
           left(c.code, 64), count(*) FILTER (WHERE c.reason <> ''), count(*) FILTER (WHERE c.code = '{DUPLICATE_SEND}'),
           {ATTEMPTS._HISTOGRAM}
    FROM (SELECT e.message_id, e.at, e.provider, e.reason, e.code, coalesce(nullif(e.reason, ''), e.code) AS outcome,
                 dispatch_rollup_bucket(extract(epoch FROM e.at - e.started_at) * 1000) AS latency_at
          FROM new_rows e WHERE (e.reason <> '' OR e.code = '{DUPLICATE_SEND}') AND e.provider <> '') c
    JOIN dispatch_message m ON m.id = c.message_id
    CROSS JOIN (VALUES {ATTEMPTS._VALUES}) AS g(grain, width)
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
    ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9
    ON CONFLICT ({ATTEMPTS.KEY}) DO UPDATE
    SET calls = r.calls + EXCLUDED.calls, duplicates = r.duplicates + EXCLUDED.duplicates,
        latency_ms = dispatch_rollup_add(r.latency_ms, EXCLUDED.latency_ms);
    RETURN NULL;
END $$"""  # noqa: S608 - our own constants


class Migration(migrations.Migration):
    dependencies = [("dispatch", "0016_attempt_rollup")]

    operations = [
        migrations.AddField(
            model_name="attemptrollup",
            name="duplicates",
            field=models.BigIntegerField(
                db_default=0, default=0, help_text="Messages this provider delivered too, after another one had them."
            ),
        ),
        migrations.RunSQL(FUNCTION, ATTEMPTS.FUNCTION.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")),
    ]
