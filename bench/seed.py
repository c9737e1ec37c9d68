"""Old messages for the history scenario (bench.history): N messages spread over the last 30 days with
their events and receipts, written with COPY into the parent tables (a partitioned table routes each
row to its partition) by several processes, each a chunk of 20,000 messages at a time in one
transaction. Ids are UUIDv7 whose timestamps are the rows' own times, as the service makes them.

Pure Python on purpose (no numpy here): rows are formatted as COPY text directly, timestamps from a
per-minute cache, ids from the random bits of a per-chunk generator."""

from __future__ import annotations

import functools
import multiprocessing
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import psycopg

T = TypeVar("T")
CHUNK = 20_000
HISTORY_DAYS = 30
# A tenth of the history lies beyond the default 30-day retention (31 to 35 days back), so that one
# retention cycle has something to remove.
BEYOND_DAYS = (31, 35)
BEYOND_SHARE = 0.10
# The history ends this long before the seeding starts: past every periodic job's window (polling 6 h,
# rematch and receipt timeouts a day), so that what the jobs find to do is the same in both phases and
# the ratio shows what old rows cost them. (Ending 15 minutes back, the seeded `sent` messages without
# receipts, unmatched receipts and silent codes of the last day were due work: polling 12 → 584 ms.)
NEWEST_SECONDS = 26 * 3600
DAY_MS = 86_400_000
NULL = "\\N"

MESSAGE_COLUMNS = (
    "id", "account_id", "batch_id", "template_id", "template_code", "channel", "category", "priority", "address",
    "user_id", "params", "title", "content", "segments", "status", "code", "detail", "provider", "provider_message_id",
    "attempts", "lease_until", "created_at", "scheduled_at", "sent_at", "delivered_at", "expires_at", "read_at",
    "needs_reconcile",
)  # fmt: skip
EVENT_COLUMNS = ("id", "message_id", "status", "at", "code", "detail", "provider", "attempt", "started_at")
RECEIPT_COLUMNS = (
    "id", "provider", "kind", "provider_message_id", "message_ref", "to", "status", "code", "detail", "source",
    "reported_at", "received_at", "message_id", "matched_at",
)  # fmt: skip
TABLES = {
    "dispatch_message": MESSAGE_COLUMNS,
    "dispatch_messageevent": EVENT_COLUMNS,
    "receipts_providerreceipt": RECEIPT_COLUMNS,
}

# Final statuses of the history (weights): mostly delivered; 1 % still `sent`, their receipt never came.
STATUSES = ("delivered", "undelivered", "failed", "expired", "rejected", "suppressed", "canceled", "sent")
STATUS_WEIGHTS = (88.0, 4.0, 2.0, 1.0, 2.0, 1.0, 1.0, 1.0)
# Mainland mobile prefixes of the three carriers.
PREFIXES = ("134", "135", "136", "138", "139", "150", "158", "182", "187", "130", "131", "155", "186", "133", "153", "180", "189")
NAMES = ("张伟", "王芳", "李娜", "刘洋", "陈静", "杨帆", "赵磊", "黄敏", "Li Wei", "Zhang Min", "Chen Jie", "Wang Lei")
RARE_WORDS = ("zanzibar", "麒麟")  # each in about one message in 20,000 (the `q` searches look for them)
RARE_ODDS = 20_000


@dataclass(frozen=True)
class Template:
    id: str | None
    code: str
    channel: str
    category: str
    content: str  # str.format with o (order), c (code), n (name), w (rare word or "")
    weight: float


@dataclass(frozen=True)
class Sender:
    account_id: str
    share: float  # of all messages
    templates: tuple[Template, ...]


@dataclass(frozen=True)
class Provider:
    name: str
    kind: str
    source: str  # how its receipts arrive: push or poll


@dataclass(frozen=True)
class Plan:
    url: str
    total: int
    now_ms: int
    senders: tuple[Sender, ...]
    providers: dict[str, tuple[Provider, ...]]  # channel → the providers that send it
    # table → (names, "\t…" values) of its NOT NULL columns without a default that this module does not know
    extra: dict[str, tuple[tuple[str, ...], str]]
    lookup_address: str  # an address that the bench account's history has some messages to
    seed: int = 21

    @property
    def chunk(self) -> int:
        """Messages per chunk: CHUNK, smaller for a small history (at least ten chunks)."""
        return max(1, min(CHUNK, -(-self.total // 10)))

    @property
    def chunks(self) -> int:
        return -(-self.total // self.chunk)

    def window(self, index: int) -> tuple[int, int]:
        """The time slice (ms) of chunk `index`: the first tenth of the chunks lie 31-35 days back."""
        beyond = max(1, round(self.chunks * BEYOND_SHARE)) if self.chunks > 1 else 0
        if index < beyond:
            start, end, part, parts = self.now_ms - BEYOND_DAYS[1] * DAY_MS, self.now_ms - BEYOND_DAYS[0] * DAY_MS, index, beyond
        else:
            start, end = self.now_ms - HISTORY_DAYS * DAY_MS, self.now_ms - NEWEST_SECONDS * 1000
            part, parts = index - beyond, self.chunks - beyond
        width = (end - start) / parts
        return int(start + part * width), int(start + (part + 1) * width)


TTL_MS = {"verification": 300_000, "transactional": 3_600_000, "marketing": 3_600_000}
PRIORITY = {"verification": "critical", "transactional": "high", "marketing": "bulk"}


@functools.lru_cache(maxsize=1 << 17)
def _minute(minute: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:", time.gmtime(minute * 60))


def _ts(ms: int) -> str:
    seconds = ms // 1000
    return f"{_minute(seconds // 60)}{seconds % 60:02d}.{ms % 1000:03d}+00"


class Rows:
    """The COPY text of one chunk's messages, events and receipts."""

    def __init__(self, plan: Plan, index: int) -> None:
        self.plan = plan
        self.index = index
        self.rng = random.Random(plan.seed * 1_000_003 + index)
        self.tables: dict[str, list[str]] = {table: [] for table in TABLES}
        self.messages, self.events, self.receipts = self.tables.values()
        self.extra = {table: plan.extra[table][1] if table in plan.extra else "" for table in TABLES}

    def below(self, n: int) -> int:
        """randrange(n) without its checks (a third of the generator's time went there)."""
        return int(self.rng.random() * n)

    def pick(self, options: Sequence[T]) -> T:
        return options[int(self.rng.random() * len(options))]

    def uuid7(self, ms: int) -> str:
        bits = self.rng.getrandbits(74)
        h = f"{ms:012x}7{bits >> 62:03x}{(bits & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000:016x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def requests(self, count: int) -> Iterator[tuple[int, int]]:
        """(time, size) of the send requests that made `count` messages: most of one message,
        some of tens, a few bulk batches of hundreds."""
        sizes = []
        while count > 0:
            roll = self.rng.random()
            size = 1 if roll < 0.7 else self.rng.randint(2, 50) if roll < 0.95 else self.rng.randint(100, 1000)
            sizes.append(min(size, count))
            count -= sizes[-1]
        start, end = self.plan.window(self.index)
        yield from zip(sorted(self.rng.randrange(start, end) for _ in sizes), sizes, strict=True)

    def build(self) -> Rows:
        plan, rng = self.plan, self.rng
        senders, shares = plan.senders, [s.share for s in plan.senders]
        for at, size in self.requests(min(plan.chunk, plan.total - self.index * plan.chunk)):
            sender = rng.choices(senders, shares)[0]
            template = rng.choices(sender.templates, [t.weight for t in sender.templates])[0]
            batch = self.uuid7(at)
            for status in rng.choices(STATUSES, STATUS_WEIGHTS, k=size):
                self.message(sender, template, batch, at, status)
            if rng.random() < 0.001:  # now and then a receipt that matched no message
                provider = rng.choice(plan.providers["sms"])
                self.receipt(at + 5000, provider, f"{provider.kind[:2]}{rng.getrandbits(96):024x}", self.address("sms", sender),
                             "delivered", "", None)  # fmt: skip
        return self

    def address(self, channel: str, sender: Sender) -> str:
        rng = self.rng
        if channel == "email":
            return f"user{self.below(10**6)}@example.com"
        if channel == "wechat":
            return f"oX{rng.getrandbits(100):025x}"
        if sender is self.plan.senders[0] and rng.random() < 20 / self.plan.total:
            return self.plan.lookup_address  # about 20 messages in the whole history
        return f"+86{self.pick(PREFIXES)}{self.below(10**8):08d}"

    def message(self, sender: Sender, template: Template, batch: str, at: int, status: str) -> None:
        rng = self.rng
        mid = self.uuid7(at)
        address = self.address(template.channel, sender)
        order, code, name = f"{self.below(10**9):09d}", f"{self.below(10**6):06d}", self.pick(NAMES)
        word = f" {self.pick(RARE_WORDS)}" if rng.random() * RARE_ODDS < 1 else ""
        content = template.content.format(o=order, c=code, n=name, w=word)
        params = f'{{"order_no": "{order}", "code": "{code}", "name": "{name}"}}'
        provider = self.pick(self.plan.providers[template.channel])
        pid, sent, delivered, error, used, attempts = "", NULL, NULL, "", provider.name, 0
        if status in {"delivered", "undelivered", "sent"}:
            attempts = 1 if rng.random() < 0.97 else 2
            sent_ms = at + 80 + self.below(3000)
            pid = f"{provider.kind[:2]}{mid[:8]}{mid[9:13]}{mid[24:]}"
            sent = _ts(sent_ms)
            self.event(sent_ms, mid, "sent", "", provider.name, attempts, _ts(sent_ms - 30 - self.below(400)))
            if status == "sent":  # its receipt never came
                self.event(sent_ms + 600_000, mid, "receipt_timeout", "", provider.name, None, NULL)
            else:
                done_ms = sent_ms + 1500 + self.below(40_000)
                if status == "delivered":
                    delivered = _ts(done_ms)
                else:
                    error = self.pick(("UNDELIV", "MK:0001", "EXPIRED", "BLACKLIST"))
                self.event(done_ms, mid, status, error, provider.name, None, NULL)
                self.receipt(done_ms, provider, pid, address, status, error, mid)
        elif status == "failed":
            attempts, error = 2, rng.choice(("provider_error", "invalid_number", "content_rejected"))
            self.event(at + 1000, mid, "retry_wait", "provider_unavailable", provider.name, 1, _ts(at + 500))
            self.event(at + 9000, mid, "failed", error, provider.name, 2, _ts(at + 8000))
        else:
            used, error = "", {"rejected": "frequency_limited", "suppressed": "duplicate"}.get(status, status)
            if status in {"expired", "canceled"}:  # refused ones have no stored events
                ms = at + TTL_MS[template.category] if status == "expired" else at + rng.randint(1000, 60_000)
                self.event(ms, mid, status, error, "", None, NULL)
        self.messages.append(
            f"{mid}\t{sender.account_id}\t{batch}\t{template.id or NULL}\t{template.code}\t{template.channel}\t"
            f"{template.category}\t{PRIORITY[template.category]}\t{address}\t\t{params}\t\t{content}\t"
            f"{2 if len(content) > 70 else 1}\t{status}\t{error}\t\t{used}\t{pid}\t{attempts}\t{NULL}\t{_ts(at)}\t{NULL}\t"
            f"{sent}\t{delivered}\t{_ts(at + TTL_MS[template.category])}\t{NULL}\tf{self.extra['dispatch_message']}"
        )

    def event(self, ms: int, mid: str, status: str, code: str, provider: str, attempt: int | None, started: str) -> None:
        self.events.append(
            f"{self.uuid7(ms)}\t{mid}\t{status}\t{_ts(ms)}\t{code}\t\t{provider}\t"
            f"{NULL if attempt is None else attempt}\t{started}{self.extra['dispatch_messageevent']}"
        )

    def receipt(self, ms: int, provider: Provider, pid: str, to: str, status: str, code: str, mid: str | None) -> None:
        at, matched = _ts(ms), mid is not None
        self.receipts.append(
            f"{self.uuid7(ms)}\t{provider.name}\t{provider.kind}\t{pid}\t{NULL}\t{to}\t{status}\t{code}\t\t"
            f"{provider.source}\t{_ts(ms - 800)}\t{at}\t{mid if matched else NULL}\t{at if matched else NULL}"
            f"{self.extra['receipts_providerreceipt']}"
        )


# --- Columns -----------------------------------------------------------------------------------------

# Values for NOT NULL columns without a database default that other changes may add: by type.
FILL = {
    "boolean": "f",
    "smallint": "0",
    "integer": "0",
    "bigint": "0",
    "numeric": "0",
    "real": "0",
    "double precision": "0",
    "text": "",
    "character varying": "",
    "jsonb": "{}",
    "json": "{}",
}


def extra_columns(conn: psycopg.Connection[tuple[object, ...]], now: str) -> dict[str, tuple[tuple[str, ...], str]]:
    """Checks the tables against the columns this module writes: a column it writes must exist, and a
    NOT NULL column without a default that it does not know gets a plain value of its type (a clear
    failure for a type it has no plain value for)."""
    found: dict[str, tuple[tuple[str, ...], str]] = {}
    for table, known in TABLES.items():
        rows = conn.execute(
            "SELECT column_name, is_nullable, column_default, data_type, is_generated, is_identity "
            "FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = %s",
            (table,),
        ).fetchall()
        if not rows:
            raise SystemExit(f"bench.seed: the database has no table {table} (migrations not applied?)")
        if missing := sorted(set(known) - {str(row[0]) for row in rows}):
            raise SystemExit(
                f"bench.seed writes {table}.{', '.join(missing)}, which the database does not have: update bench/seed.py"
            )
        names, values = [], []
        for name, nullable, default, data_type, generated, identity in rows:
            if name in known or nullable == "YES" or default is not None or generated != "NEVER" or identity == "YES":
                continue
            value = now if str(data_type).startswith("timestamp") else FILL.get(str(data_type))
            if value is None:
                raise SystemExit(
                    f"bench.seed: {table}.{name} ({data_type}) is NOT NULL without a default and the seeder does not know "
                    "what to put there: add it to bench/seed.py"
                )
            names.append(str(name))
            values.append(value)
        if names:
            print(f"  (seeding {table}: new NOT NULL column(s) {', '.join(names)} filled with {values})")
            found[table] = (tuple(names), "".join(f"\t{value}" for value in values))
    return found


# --- Copying -----------------------------------------------------------------------------------------

_worker: dict[str, object] = {}


def _start_worker(plan: Plan) -> None:
    conn = psycopg.connect(plan.url)
    conn.execute("SET synchronous_commit = off")  # a lost tail on a crash costs nothing here
    conn.commit()
    _worker.update(plan=plan, conn=conn)


def _statements(plan: Plan) -> dict[str, str]:
    statements = {}
    for table, known in TABLES.items():
        columns = ", ".join(f'"{name}"' for name in (*known, *plan.extra.get(table, ((), ""))[0]))
        statements[table] = f"COPY {table} ({columns}) FROM STDIN"
    return statements


def _copy_chunk(index: int) -> tuple[int, int, int]:
    plan, conn = _worker["plan"], _worker["conn"]
    assert isinstance(plan, Plan) and isinstance(conn, psycopg.Connection)
    rows = Rows(plan, index).build()
    with conn.transaction(), conn.cursor() as cursor:
        for table, statement in _statements(plan).items():
            with cursor.copy(statement) as copy:
                lines = rows.tables[table]
                for start in range(0, len(lines), 5000):
                    copy.write("\n".join(lines[start : start + 5000]) + "\n")
    return len(rows.messages), len(rows.events), len(rows.receipts)


def seed(plan: Plan, streams: int) -> tuple[tuple[int, int, int], float]:
    """Runs the COPY streams over every chunk; prints progress. Returns the rows written per table
    and the seconds taken."""
    done = [0, 0, 0]
    started = last = time.perf_counter()
    context = multiprocessing.get_context("fork")
    try:
        with context.Pool(streams, _start_worker, (plan,)) as pool:
            # Newest chunks last, across the streams: each stream's rows go to a few partitions at a time.
            for counts in pool.imap_unordered(_copy_chunk, range(plan.chunks)):
                done = [a + b for a, b in zip(done, counts, strict=True)]
                now = time.perf_counter()
                if now - last >= 10 or done[0] == plan.total:
                    last = now
                    print(
                        f"  {done[0]:>11,} / {plan.total:,} messages ({done[0] / plan.total:4.0%}), {done[1]:,} events, "
                        f"{done[2]:,} receipts: {done[0] / (now - started):,.0f} messages/s",
                        flush=True,
                    )
    except psycopg.Error as error:
        hint = " (a partitioned table without a partition for the history's days?)" if "partition" in str(error) else ""
        raise SystemExit(f"seeding failed{hint}: {error}") from None
    return (done[0], done[1], done[2]), time.perf_counter() - started


def rows_per_chunk(plan: Plan, index: int = 0) -> Sequence[int]:
    """For a quick look at the generator alone (no database): the row counts of one chunk."""
    rows = Rows(plan, index).build()
    return [len(lines) for lines in rows.tables.values()]
