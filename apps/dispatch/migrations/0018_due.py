"""The periodic jobs' own small table (#21): `dispatch_due` holds a row per scheduled message (at =
scheduled_at) and per sent message (at = sent_at, its provider), kept by statement-level triggers on
the messages — inserted when a message enters the state, gone when it leaves it. Due scheduled
messages, receipt polling and receipt timeouts read it, then their messages by id (plan-time pruning
to the partitions that hold them), so a run costs its due rows, whatever the days of history kept. The
rows already in those states are copied in, and the messages' partial index those jobs read
(`msg_sent_by_provider`) goes."""

from django.db import migrations, models

SCHEDULED, SENT = "scheduled", "sent"
_ROW = f"""SELECT n.status, n.id, CASE WHEN n.status = '{SCHEDULED}' THEN n.scheduled_at ELSE n.sent_at END,
           coalesce(n.provider, ''), FALSE"""
_DUE = f"((n.status = '{SCHEDULED}' AND n.scheduled_at IS NOT NULL) OR (n.status = '{SENT}' AND n.sent_at IS NOT NULL))"
_UPSERT = """ON CONFLICT (kind, message_id) DO UPDATE
        SET at = EXCLUDED.at, provider = EXCLUDED.provider, flagged = dispatch_due.flagged AND dispatch_due.at = EXCLUDED.at"""

INSERTED = f"""CREATE FUNCTION dispatch_due_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO dispatch_due (kind, message_id, at, provider, flagged)
    {_ROW} FROM new_rows n WHERE {_DUE}
    {_UPSERT};
    RETURN NULL;
END $$"""  # noqa: S608 - our own constants
UPDATED = f"""CREATE FUNCTION dispatch_due_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM dispatch_due d USING old_rows o JOIN new_rows n ON n.id = o.id
    WHERE d.kind = o.status AND d.message_id = o.id AND o.status IN ('{SCHEDULED}', '{SENT}') AND n.status <> o.status;
    INSERT INTO dispatch_due (kind, message_id, at, provider, flagged)
    {_ROW} FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE {_DUE} AND (n.status <> o.status OR n.scheduled_at IS DISTINCT FROM o.scheduled_at
                      OR n.sent_at IS DISTINCT FROM o.sent_at OR n.provider IS DISTINCT FROM o.provider)
    {_UPSERT};
    RETURN NULL;
END $$"""  # noqa: S608 - our own constants
TRIGGERS = [
    "CREATE TRIGGER dispatch_due_inserted AFTER INSERT ON dispatch_message "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION dispatch_due_inserted()",
    "CREATE TRIGGER dispatch_due_updated AFTER UPDATE ON dispatch_message "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION dispatch_due_updated()",
]
# What is due already: scheduled messages, and sent ones inside the longest window a job looks back
# (a day: the timeouts job; RECEIPT_POLL_WINDOW_SECONDS is 6 h unless set longer — then polling
# sees the new rows only, as those older leave the window).
BACKFILL = f"""INSERT INTO dispatch_due (kind, message_id, at, provider, flagged)
    {_ROW} FROM dispatch_message n
    WHERE (n.status = '{SCHEDULED}' AND n.scheduled_at IS NOT NULL)
       OR (n.status = '{SENT}' AND n.sent_at > now() - interval '1 day')
    ON CONFLICT DO NOTHING"""  # noqa: S608 - our own constants


class Migration(migrations.Migration):
    dependencies = [("dispatch", "0017_rollup_duplicates")]

    operations = [
        migrations.CreateModel(
            name="Due",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "kind", "message_id", blank=True, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("kind", models.CharField(choices=[("scheduled", "Scheduled"), ("sent", "Sent")], max_length=16)),
                ("message_id", models.UUIDField()),
                ("at", models.DateTimeField()),
                ("provider", models.CharField(blank=True, default="", max_length=64)),
                (
                    "flagged",
                    models.BooleanField(default=False, help_text="A `sent` message's receipt_timeout event is recorded."),
                ),
            ],
            options={
                "db_table": "dispatch_due",
                "indexes": [models.Index(fields=["kind", "provider", "at", "message_id"], name="due_by_time")],
            },
        ),
        # Its readers read dispatch_due now: one index less for every message that becomes `sent`.
        migrations.RemoveIndex(model_name="message", name="msg_sent_by_provider"),
        migrations.RunSQL(
            [INSERTED, UPDATED, *TRIGGERS, BACKFILL],
            [
                "DROP TRIGGER dispatch_due_inserted ON dispatch_message",
                "DROP TRIGGER dispatch_due_updated ON dispatch_message",
                "DROP FUNCTION dispatch_due_inserted()",
                "DROP FUNCTION dispatch_due_updated()",
            ],
        ),
    ]
