"""The spool: verification and transactional sends accepted through a PostgreSQL outage.

Design (issue #22, Build 4):

- **Where**: Redis, not a local journal. Every web process (on any host) must be able to answer
  `GET /messages/{id}` for a spooled message and every worker must be able to claim it: a journal on
  one host's disk is neither shared nor atomically claimable; Redis is, with Lua, and the send path
  already depends on it (limits, rate, dedup). Durable: before a spooled write the instance is put on
  `appendfsync always` (Redis 6.2 has no WAITAOF; `store._ensure_fsync_always`), and put back once the
  spool is empty. Its cost (measured on the embedded Redis here: one write 104 → 328 µs, pipelined
  writes 122k → 52k/s) is paid only during an outage.
- **Detecting the outage** (`accept.database_down`): a send whose write failed because the database
  could not be reached answers 503 and marks the outage for this process; from then on sends of the
  spooled categories go to the spool after one refused connection per second (`connect_timeout` 2 s
  bounds a host that does not answer). A send goes to the spool only after a *refused* connection,
  so it cannot also be in the database (a send that failed mid-transaction answered 503 instead).
- **Authentication, templates, caps**: the per-process caches serve the last value they read while
  the database is down (`TtlCache.get_or_load(stale_on=…)`); a key or template this process never
  read answers 503. Limits, quota, rate and dedup are in Redis already. Sends with an
  `Idempotency-Key` answer 503 (its earlier use may be in the database); so do sends addressed by
  `user_id` (recipients are in the database), and marketing and bulk sends.
- **Delivery** (`delivery.deliver_spooled`, task `dispatch.deliver_spooled` on the message's lane):
  verification codes only. Claimed in Redis by a script (queued, due retry or a lapsed lease →
  sending, attempt counted), routed among the providers as the worker last read them, sent through
  the delivery engine's adapters and outbound message, the outcome and its event written by a script
  that checks the claimed attempt. A lapsed lease (dead worker) is sent again through another
  provider: for a code a second one is harmless, a late one is not. Transactional messages wait in
  the spool: their recipients' opt-outs are in the database; the replay checks them, then they are
  delivered as any other.
- **Receipts** arriving meanwhile: the receipts endpoint answers 503 and providers push again (the
  simulator retries, as providers do); a report that arrives before the replay is kept unmatched and
  applied by the rematch job or the replay's `sent` hook.
- **Replay** (`replay.replay_spool`, beat `dispatch.replay_spool` every 2 s): a script marks a batch
  `replaying` (no worker claims it again; one under a live lease waits), one transaction inserts the
  messages `ON CONFLICT (id) DO NOTHING` (the id is the partition key), the events and verification
  codes of the messages it inserted, and outbox rows for those still to deliver; then they leave the
  spool. A replay that dies after its commit is repeated and inserts nothing twice.
"""
