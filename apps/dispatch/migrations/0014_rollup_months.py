"""Coarser rollup rows (#21), so that `/stats` over a long range reads few rows whatever the history:
a row per group and calendar month (UTC), and `totals` — a day's messages by outcome alone (every
other part of the key ''), for `group_by=day`. The triggers of 0011 add each change to these rows
too; the rows so far are summed from the day rows (which outlive the messages' retention)."""

import importlib

from django.db import migrations, models

rollups = importlib.import_module("apps.dispatch.migrations.0011_rollups")

COARSER = (*rollups.GRAINS, ("month", "1 month"), ("totals", "1 day"))


def _backfill(grain, bucket, dimensions):
    """`grain` rows summed from the day rows: the bucket `bucket` of a day row's, `dimensions` its key."""
    key = ("account_id", "bucket", *rollups.DIMENSIONS, "outcome")
    columns = ", ".join(f"{expression} AS {name}" for name, expression in zip(rollups.DIMENSIONS, dimensions, strict=True))
    histograms = [
        f"""{histogram} AS (
            SELECT {", ".join(key)}, array_agg(n ORDER BY i) AS {histogram} FROM (
                SELECT {", ".join(f"d.{k}" for k in key)}, u.i, sum(u.n)::int AS n
                FROM d, unnest(d.{histogram}) WITH ORDINALITY AS u(n, i) GROUP BY {", ".join(f"d.{k}" for k in key)}, u.i
            ) AS summed GROUP BY {", ".join(key)}
        )"""
        for histogram in rollups.HISTOGRAMS
    ]
    return f"""
    WITH d AS (
        SELECT account_id, {bucket} AS bucket, {columns}, outcome, {", ".join(rollups.COUNTERS)}, {", ".join(rollups.HISTOGRAMS)}
        FROM dispatch_rollup WHERE grain = 'day'
    ), sums AS (
        SELECT {", ".join(key)}, {", ".join(f"sum({c}) AS {c}" for c in rollups.COUNTERS)} FROM d GROUP BY {", ".join(key)}
    ), {", ".join(histograms)}
    INSERT INTO dispatch_rollup ({rollups.KEY}, {", ".join(rollups.COUNTERS)}, {", ".join(rollups.HISTOGRAMS)})
    SELECT account_id, '{grain}', bucket, {", ".join(rollups.DIMENSIONS)}, outcome, {", ".join(rollups.COUNTERS)},
           {", ".join(rollups.HISTOGRAMS)}
    FROM sums {" ".join(f"JOIN {h} USING ({', '.join(key)})" for h in rollups.HISTOGRAMS)}"""


BACKFILLS = [
    _backfill("month", "date_trunc('month', bucket, 'UTC')", rollups.DIMENSIONS),
    _backfill("totals", "bucket", ["''"] * len(rollups.DIMENSIONS)),
]


def _functions(grains):
    return [
        rollups._trigger_function(
            trigger, changes, rollups._UNCHANGED if trigger == "dispatch_rollup_updated" else "", grains, "CREATE OR REPLACE"
        )
        for trigger, _table, _event, _transitions, changes in rollups.TRIGGERS
    ]


GRAIN_CHOICES = [("minute", "Minute"), ("hour", "Hour"), ("day", "Day"), ("month", "Month"), ("totals", "Day totals")]


class Migration(migrations.Migration):
    dependencies = [("dispatch", "0013_periodic_indexes")]

    operations = [
        migrations.AlterField(model_name="rollup", name="grain", field=models.CharField(choices=GRAIN_CHOICES, max_length=6)),
        migrations.RunSQL(
            [*BACKFILLS, *_functions(COARSER)],
            [*_functions(rollups.GRAINS), "DELETE FROM dispatch_rollup WHERE grain IN ('month', 'totals')"],
        ),
    ]
