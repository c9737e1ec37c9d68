"""`q` searches through an index (issue #21, bounded reads).

pg_trgm is not available everywhere we run (the embedded server ships no contrib extensions), so the
index is built from built-ins: `mc_grams(text)` is the two-character pieces of the lower-cased text, at
even and at odd offsets (so every adjacent pair: Chinese words of two characters are indexed too), as a
text[] for a GIN index. It is one expression of C functions, so PostgreSQL inlines it (a function that
loops in SQL cost 70 µs a row, this one 7 µs). `\x01` separates the pieces, so the text's own `\x01` is
read as `\x02` (a few more candidates, never a missed one). Changing the function needs a REINDEX.

The index leaves out messages still on their way (scheduled, queued, sending, retry_wait): the accept
path's inserts and the moves before `sent` write none of its entries (each status change is a new row
version, and a GIN index takes ~40 entries a message); searches find those through the status index.

Plain CREATE INDEX: on a partitioned dispatch_message it makes the index on every partition.
"""

import django.contrib.postgres.indexes
from django.db import migrations, models

import apps.dispatch.models

CREATE_FUNCTION = r"""
CREATE OR REPLACE FUNCTION mc_grams(t text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT array_remove(string_to_array(
      regexp_replace(replace(lower(t), E'\x01', E'\x02'), '(..)|.', E'\\1\x01', 'g')
      || regexp_replace(substr(replace(lower(t), E'\x01', E'\x02'), 2), '(..)|.', E'\\1\x01', 'g'),
      E'\x01'), '')
$$;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("dispatch", "0011_rollups"),
    ]

    operations = [
        migrations.RunSQL(CREATE_FUNCTION, reverse_sql="DROP FUNCTION IF EXISTS mc_grams(text);"),
        migrations.AddIndex(
            model_name="message",
            index=django.contrib.postgres.indexes.GinIndex(
                apps.dispatch.models.ContentGrams("content"),
                condition=models.Q(
                    status__in=["sent", "delivered", "undelivered", "failed", "expired", "canceled", "suppressed", "rejected"]
                ),
                name="msg_content_grams",
            ),
        ),
    ]
