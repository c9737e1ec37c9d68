"""Rollups (#21): the `segment` of each message, the `dispatch_rollup` table, the triggers that keep it
and a backfill of both from the messages already stored. docs/architecture.md, "Rollups", says why.

The SQL is written out here from this file's constants (the +86 carrier blocks are read from
apps/dispatch/segments when it runs); apps/dispatch/models.LATENCY_BOUNDS_MS and
apps/dispatch/segments hold the same rules for the Python side (tests/dispatch/test_rollups.py keeps
them equal). An UPDATE that changes no contribution returns before aggregating (`_UNCHANGED`).

Existing installations: the backfill rewrites every message row once (its segment) and reads them
all once more for the rollups, inside the migration's transaction, which holds dispatch_message
locked meanwhile — minutes per ten million messages; run it in a maintenance window."""

import json

import django.contrib.postgres.fields
import phonenumbers
from django.db import migrations, models

BOUNDS_MS = (
    0, 10, 25, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1_000, 1_500, 2_000, 3_000, 4_000, 5_000, 7_500,
    10_000, 15_000, 20_000, 30_000, 45_000, 60_000, 90_000, 120_000, 180_000, 300_000, 600_000, 1_800_000, 3_600_000,
)  # fmt: skip
PENDING = ("scheduled", "queued", "sending", "retry_wait")
SENT = ("sent", "delivered", "undelivered")
DIMENSIONS = ("channel", "category", "priority", "provider", "template_code", "segment")
KEY = f"account_id, grain, bucket, {', '.join(DIMENSIONS)}, outcome"
COUNTERS = ("messages", "sms_segments", "attempted", "codes", "filled")
HISTOGRAMS = ("latency_ms", "queue_ms")


def _list(values):
    return ", ".join(f"'{v}'" for v in values)


FUNCTIONS = [
    # The histogram bucket (1-based, as the arrays) of a duration in ms: bucket i holds [BOUNDS[i], BOUNDS[i+1]).
    f"""CREATE FUNCTION dispatch_rollup_bucket(ms float8) RETURNS int LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT width_bucket(greatest(ms, 0), ARRAY[{", ".join(map(str, BOUNDS_MS))}]::float8[]) $$""",
    """CREATE FUNCTION dispatch_rollup_add(a int[], b int[]) RETURNS int[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT array_agg(coalesce(x, 0) + coalesce(y, 0) ORDER BY i) FROM unnest(a, b) WITH ORDINALITY AS t(x, y, i) $$""",
]


def _segment_function():
    codes = {str(code): regions[0] for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items() if regions}
    from apps.dispatch.segments import CN_CARRIER_BLOCKS  # noqa: PLC0415 - data, frozen into the SQL here

    carriers = json.dumps(CN_CARRIER_BLOCKS)
    regions = json.dumps(codes)
    return f"""CREATE FUNCTION dispatch_segment(channel text, address text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN channel <> 'sms' THEN channel
        WHEN left(address, 3) = '+86' THEN 'CN-' || coalesce('{carriers}'::jsonb ->> substr(address, 4, 4),
                                                          '{carriers}'::jsonb ->> substr(address, 4, 3), 'other')
        ELSE coalesce('{regions}'::jsonb ->> substr(address, 2, 1), '{regions}'::jsonb ->> substr(address, 2, 2),
                      '{regions}'::jsonb ->> substr(address, 2, 3), '')
    END $$"""


def _contribution(table, sign, counters=COUNTERS):
    """Each message row of `table` as what it adds to its groups (times `sign`), at minute grain.
    `counters`: a later migration's (0015 adds `cost`, a column of the message of the same name)."""
    extra = "".join(f", {sign} * t.{c} AS {c}" for c in counters[len(COUNTERS) :])
    return f"""
    SELECT date_bin('1 minute', t.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS minute,
           t.account_id, t.channel, t.category, t.priority,
           CASE WHEN o.outcome = 'pending' THEN '' ELSE t.provider END AS provider,
           t.template_code, t.segment, o.outcome,
           CASE WHEN o.outcome = 'delivered'
                THEN dispatch_rollup_bucket(extract(epoch FROM t.delivered_at - t.sent_at) * 1000) END AS latency_at,
           CASE WHEN o.outcome IN ({_list(SENT)})
                THEN dispatch_rollup_bucket(extract(epoch FROM t.sent_at - coalesce(t.scheduled_at, t.created_at)) * 1000)
           END AS queue_at,
           {sign} AS messages, {sign} * coalesce(t.segments, 0) AS sms_segments,
           CASE WHEN t.attempts > 0 AND o.outcome <> 'pending' THEN {sign} ELSE 0 END AS attempted,
           {sign} * v.codes AS codes, {sign} * v.filled AS filled{extra}
    FROM {table} t
    CROSS JOIN LATERAL (SELECT CASE WHEN t.status IN ({_list(PENDING)}) THEN 'pending' ELSE t.status END AS outcome) o
    -- Codes count with their message, only verification messages have them (verification_send).
    CROSS JOIN LATERAL (SELECT count(*) AS codes, count(v.verified_at) AS filled FROM receipts_verification v
                        WHERE t.category = 'verification' AND v.message_id = t.id) v"""


# The grains each change is added to, with the width of their buckets (a month: a calendar month, UTC).
GRAINS = (("minute", "1 minute"), ("hour", "1 hour"), ("day", "1 day"))


_BIN = "date_bin(g.width, c.minute, TIMESTAMPTZ '2000-01-01 00:00:00+00')"


def _upsert(changes, grains=GRAINS, counters=COUNTERS):
    """Adds `changes` (contributions at minute grain) to the rows of each of `grains`, skipping what
    adds nothing, in key order (two statements upserting the same rows never deadlock)."""
    zeros = f"array_fill(0, ARRAY[{len(BOUNDS_MS)}])"
    histograms = {
        name: "ARRAY["
        + ", ".join(f"coalesce(sum(c.messages) FILTER (WHERE c.{at} = {i}), 0)" for i in range(1, len(BOUNDS_MS) + 1))
        + "]::int[]"
        for name, at in (("latency_ms", "latency_at"), ("queue_ms", "queue_at"))
    }
    sums = ", ".join(f"sum(c.{counter}) AS {counter}" for counter in counters)
    grouped = "minute, account_id, channel, category, priority, provider, template_code, segment, outcome, latency_at, queue_at"
    nonzero = " OR ".join([*(f"{c} <> 0" for c in counters), *(f"{h} <> {zeros}" for h in HISTOGRAMS)])
    updates = ", ".join(
        [*(f"{c} = r.{c} + EXCLUDED.{c}" for c in counters), *(f"{h} = dispatch_rollup_add(r.{h}, EXCLUDED.{h})" for h in HISTOGRAMS)]
    )
    values = ", ".join(f"('{grain}', INTERVAL '{width}')" for grain, width in grains)
    buckets = _BIN
    if "month" in dict(grains):
        buckets = f"CASE WHEN g.grain = 'month' THEN date_trunc('month', c.minute, 'UTC') ELSE {_BIN} END"
    # `totals`: a day's messages by outcome alone, every other part of the key ''.
    dimensions = ", ".join(
        f"CASE WHEN g.grain = 'totals' THEN '' ELSE c.{d} END AS {d}" if "totals" in dict(grains) else f"c.{d}"
        for d in DIMENSIONS
    )
    return f"""
    WITH changes AS ({changes}),
    minutes AS (
        SELECT {grouped}, {sums} FROM changes c GROUP BY {grouped}
    ), deltas AS (
        SELECT c.account_id, g.grain, {buckets} AS bucket, {dimensions}, c.outcome,
               {sums}, {histograms["latency_ms"]} AS latency_ms, {histograms["queue_ms"]} AS queue_ms
        FROM minutes c
        CROSS JOIN (VALUES {values}) AS g(grain, width)
        WHERE {" OR ".join(f"c.{counter} <> 0" for counter in counters)}
        GROUP BY c.account_id, g.grain, 3, 4, 5, 6, 7, 8, 9, c.outcome
    )
    INSERT INTO dispatch_rollup AS r ({KEY}, {", ".join(counters)}, {", ".join(HISTOGRAMS)})
    SELECT {KEY}, {", ".join(counters)}, {", ".join(HISTOGRAMS)} FROM deltas WHERE {nonzero} ORDER BY {KEY}
    ON CONFLICT ({KEY}) DO UPDATE SET {updates}"""


def _signature(t, counters=COUNTERS):
    """What of a message row its contribution depends on: pending statuses as one, and the provider,
    attempts and times only where a settled outcome reads them (and the columns of `counters` beyond
    0011's own)."""
    settled = f"{t}.status NOT IN ({_list(PENDING)})"
    extra = "".join(f", {t}.{c}" for c in counters[len(COUNTERS) :])
    return (
        f"(CASE WHEN {settled} THEN {t}.status END, CASE WHEN {settled} THEN {t}.provider END, "
        f"CASE WHEN {settled} THEN {t}.attempts > 0 END, CASE WHEN {settled} THEN {t}.sent_at END, "
        f"CASE WHEN {settled} THEN {t}.delivered_at END, CASE WHEN {settled} THEN {t}.scheduled_at END, {t}.created_at, "
        f"{t}.segments, {t}.segment, {t}.template_code, {t}.channel, {t}.category, {t}.priority, {t}.account_id{extra})"
    )


def unchanged(counters=COUNTERS):
    """An UPDATE that changes no row's contribution (a claim, a lease, a provider recorded while pending)
    ends here, before the aggregation."""
    return f"""
        IF NOT EXISTS (
            SELECT 1 FROM new_rows n LEFT JOIN old_rows o ON o.id = n.id
            WHERE o.id IS NULL OR {_signature("n", counters)} IS DISTINCT FROM {_signature("o", counters)}
        ) THEN
            RETURN NULL;
        END IF;"""


_UNCHANGED = unchanged()


def _trigger_function(name, changes, shortcut="", grains=GRAINS, create="CREATE", counters=COUNTERS):
    return f"""{create} FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {shortcut}
        {_upsert(changes, grains, counters)};
        RETURN NULL;
    END $$"""


def _verification_changes(rows, counters=COUNTERS):
    """Codes added or filled, each at its message's current groups. The message row is locked (FOR SHARE)
    so that a status change in flight finishes first: its trigger and this one see each other's rows."""
    extra = "".join(f", 0 AS {c}" for c in counters[len(COUNTERS) :])
    return f"""
    SELECT date_bin('1 minute', m.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS minute,
           m.account_id, m.channel, m.category, m.priority,
           CASE WHEN m.status IN ({_list(PENDING)}) THEN '' ELSE m.provider END AS provider,
           m.template_code, m.segment,
           CASE WHEN m.status IN ({_list(PENDING)}) THEN 'pending' ELSE m.status END AS outcome,
           NULL::int AS latency_at, NULL::int AS queue_at, 0 AS messages, 0 AS sms_segments, 0 AS attempted,
           d.codes, d.filled{extra}
    FROM ({rows}) d
    JOIN LATERAL (SELECT * FROM dispatch_message m WHERE m.id = d.message_id AND m.category = 'verification' FOR SHARE) m ON TRUE"""


_CODES_NEW = "SELECT message_id, 1 AS codes, (verified_at IS NOT NULL)::int AS filled FROM new_rows"
_CODES_OLD = "SELECT message_id, -1 AS codes, -(verified_at IS NOT NULL)::int AS filled FROM old_rows"


def _codes(*parts):
    union = " UNION ALL ".join(parts)
    return (
        f"SELECT message_id, sum(codes) AS codes, sum(filled) AS filled FROM ({union}) u GROUP BY message_id "
        "HAVING sum(codes) <> 0 OR sum(filled) <> 0"
    )


def triggers(counters=COUNTERS):
    """(trigger, table, event, transition tables, the function's changes), summing `counters`."""
    return [
        ("dispatch_rollup_inserted", "dispatch_message", "INSERT", "NEW TABLE AS new_rows", _contribution("new_rows", 1, counters)),
        (
            "dispatch_rollup_updated",
            "dispatch_message",
            "UPDATE",
            "OLD TABLE AS old_rows NEW TABLE AS new_rows",
            f"{_contribution('new_rows', 1, counters)} UNION ALL {_contribution('old_rows', -1, counters)}",
        ),
        ("dispatch_rollup_deleted", "dispatch_message", "DELETE", "OLD TABLE AS old_rows", _contribution("old_rows", -1, counters)),
        (
            "dispatch_rollup_codes_inserted",
            "receipts_verification",
            "INSERT",
            "NEW TABLE AS new_rows",
            _verification_changes(_codes(_CODES_NEW), counters),
        ),
        (
            "dispatch_rollup_codes_updated",
            "receipts_verification",
            "UPDATE",
            "OLD TABLE AS old_rows NEW TABLE AS new_rows",
            _verification_changes(_codes(_CODES_NEW, _CODES_OLD), counters),
        ),
        (
            "dispatch_rollup_codes_deleted",
            "receipts_verification",
            "DELETE",
            "OLD TABLE AS old_rows",
            _verification_changes(_codes(_CODES_OLD), counters),
        ),
    ]


TRIGGERS = triggers()


def _forward():
    statements = [*FUNCTIONS, _segment_function()]
    # Backfill before the triggers exist (the table is locked by the ALTER TABLE above meanwhile).
    statements.append("UPDATE dispatch_message SET segment = dispatch_segment(channel, address)")
    statements.append(_upsert(_contribution("dispatch_message", 1)))
    for trigger, table, event, transitions, changes in TRIGGERS:
        shortcut = _UNCHANGED if trigger == "dispatch_rollup_updated" else ""
        statements.append(_trigger_function(trigger, changes, shortcut))
        statements.append(
            f"CREATE TRIGGER {trigger} AFTER {event} ON {table} REFERENCING {transitions} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {trigger}()"
        )
    return statements


def _backward():
    statements = [f"DROP TRIGGER {trigger} ON {table}" for trigger, table, *_ in TRIGGERS]
    statements += [f"DROP FUNCTION {trigger}()" for trigger, *_ in TRIGGERS]
    return [
        *statements,
        "DROP FUNCTION dispatch_segment(text, text)",
        "DROP FUNCTION dispatch_rollup_add(int[], int[])",
        "DROP FUNCTION dispatch_rollup_bucket(float8)",
    ]


class Migration(migrations.Migration):
    dependencies = [
        ("dispatch", "0010_partitioned_tables"),
        ("verifications", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="segment",
            field=models.CharField(blank=True, db_default="", default="", max_length=16),
        ),
        migrations.CreateModel(
            name="Rollup",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "account_id",
                        "grain",
                        "bucket",
                        "channel",
                        "category",
                        "priority",
                        "provider",
                        "template_code",
                        "segment",
                        "outcome",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("account_id", models.UUIDField()),
                ("grain", models.CharField(choices=[("minute", "Minute"), ("hour", "Hour"), ("day", "Day")], max_length=6)),
                ("bucket", models.DateTimeField(help_text="The start of the minute, hour or day (UTC) the messages were created in.")),
                ("channel", models.CharField(max_length=16)),
                ("category", models.CharField(max_length=16)),
                ("priority", models.CharField(max_length=16)),
                ("provider", models.CharField(help_text="Empty while pending: a provider counts once an attempt settles.", max_length=64)),
                ("template_code", models.CharField(max_length=64)),
                ("segment", models.CharField(max_length=16)),
                ("outcome", models.CharField(help_text="The status, with scheduled, queued, sending and retry_wait as pending.", max_length=16)),
                ("messages", models.BigIntegerField(default=0)),
                ("sms_segments", models.BigIntegerField(default=0)),
                ("attempted", models.BigIntegerField(default=0, help_text="Handed to a provider at least once (0 while pending).")),
                (
                    "latency_ms",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.IntegerField(),
                        help_text="Delivered: sent → delivered, per bucket of LATENCY_BOUNDS_MS.",
                        size=None,
                    ),
                ),
                (
                    "queue_ms",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.IntegerField(),
                        help_text="Sent: accepted (or due) → sent, per bucket of LATENCY_BOUNDS_MS.",
                        size=None,
                    ),
                ),
                ("codes", models.BigIntegerField(default=0, help_text="Verification codes sent.")),
                ("filled", models.BigIntegerField(default=0, help_text="Verification codes checked valid.")),
            ],
            options={"db_table": "dispatch_rollup"},
        ),
        migrations.RunSQL(_forward(), _backward()),
    ]
