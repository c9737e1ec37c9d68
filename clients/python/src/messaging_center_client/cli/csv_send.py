"""`mc send --csv`: a CSV of recipients sent in requests of up to 1,000, resumable without doubles.

The rows are cut into chunks of `batch_size` in file order; chunk k is always the same request:
the same entries, and the `Idempotency-Key` `mc-csv-<job>-<k>`, where <job> hashes the file's bytes,
the template and the shared options. The results file is the journal: a chunk's rows are appended
(one write, flushed and synced) only once its answer is in. A rerun
- skips the chunks whose rows are all in the journal;
- sends every other chunk again, whole and with its key: a chunk whose answer was lost (Ctrl-C, a
  dropped connection, a crash after the server committed) is then replayed by the server, which
  answers with the first response and sends nothing; a chunk never received is sent for the first
  time. Either way each row gets exactly one message.
The server keeps keys for 24 h: resume within that time (the command warns after 23 h).
A results file written for other bytes or options (its keys differ) is refused rather than mixed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from messaging_center_client.cli.output import Progress
from messaging_center_client.client import Client
from messaging_center_client.errors import InvalidResponseError, MessagingCenterError
from messaging_center_client.models import ACCEPTED_STATUSES, SendResult

ADDRESS_COLUMNS = ("phone", "email", "user_id", "wechat_openid", "wecom_userid", "push_token")
OUTCOME_COLUMNS = ("status", "message_id", "code", "detail", "batch_id", "idempotency_key")
MAX_BATCH = 1000
KEY_LIFETIME_WARNING = 23 * 3600
SKIPPED = "skipped"


class CsvError(Exception):
    """The input or the results file cannot be used; nothing more is sent."""


@dataclass(frozen=True)
class Row:
    number: int  # 1 = the first row after the header
    addresses: dict[str, str]
    params: dict[str, str]

    def entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = dict(self.addresses)
        if self.params:
            entry["params"] = self.params
        return entry


@dataclass(frozen=True)
class CsvInput:
    path: Path
    columns: list[str]
    address_columns: list[str]
    rows: int
    digest: str  # sha256 of the file's bytes

    @classmethod
    def open(cls, path: Path) -> CsvInput:
        digest = hashlib.sha256()
        with open(path, "rb") as raw:
            for block in iter(lambda: raw.read(1 << 20), b""):
                digest.update(block)
        with open(path, newline="", encoding="utf-8-sig") as text:
            reader = csv.reader(text)
            header = next(reader, None)
            rows = sum(1 for record in reader if any(cell.strip() for cell in record))
        if not header:
            raise CsvError(f"{path} is empty: the first line must name the columns (phone, email, user_id, … and params).")
        columns = [name.strip() for name in header]
        duplicates = sorted({name for name in columns if columns.count(name) > 1})
        if duplicates or "" in columns:
            raise CsvError(
                f"{path}: every column needs a name of its own (duplicate or empty: {', '.join(duplicates) or '(empty)'})."
            )
        address_columns = [name for name in columns if name in ADDRESS_COLUMNS]
        if not address_columns:
            raise CsvError(f"{path} has no address column: add one of {', '.join(ADDRESS_COLUMNS)}.")
        return cls(path, columns, address_columns, rows, digest.hexdigest())

    def read(self) -> Iterator[Row]:
        with open(self.path, newline="", encoding="utf-8-sig") as text:
            reader = csv.reader(text)
            next(reader, None)
            number = 0
            for record in reader:
                if not any(cell.strip() for cell in record):
                    continue
                number += 1
                cells = dict(zip(self.columns, record, strict=False))
                addresses = {name: cells[name].strip() for name in self.address_columns if cells.get(name, "").strip()}
                params = {name: value for name, value in cells.items() if name not in ADDRESS_COLUMNS and value != ""}
                yield Row(number, addresses, params)


@dataclass(frozen=True)
class Job:
    input: CsvInput
    template: str
    params: Mapping[str, str] = field(default_factory=dict)
    priority: str | None = None
    send_at: str | None = None
    ttl: int | None = None
    batch_size: int = MAX_BATCH

    @property
    def fingerprint(self) -> str:
        """The file's bytes and everything that shapes its requests: equal only for the same job."""
        options = {
            "template": self.template,
            "params": dict(self.params),
            "priority": self.priority,
            "send_at": self.send_at,
            "ttl": self.ttl,
            "batch_size": self.batch_size,
        }
        payload = f"mc-csv/1\n{self.input.digest}\n{json.dumps(options, sort_keys=True, ensure_ascii=False)}"
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def key(self, chunk: int) -> str:
        return f"mc-csv-{self.fingerprint}-{chunk:06d}"

    def chunk_of(self, row_number: int) -> int:
        return (row_number - 1) // self.batch_size

    def chunks(self) -> Iterator[tuple[int, list[Row]]]:
        chunk: list[Row] = []
        for row in self.input.read():
            chunk.append(row)
            if len(chunk) == self.batch_size:
                yield self.chunk_of(chunk[0].number), chunk
                chunk = []
        if chunk:
            yield self.chunk_of(chunk[0].number), chunk

    def results_header(self) -> list[str]:
        return ["row", *self.input.address_columns, *OUTCOME_COLUMNS]


class Journal:
    """The results CSV: one line per row, appended a chunk at a time."""

    def __init__(self, job: Job, path: Path) -> None:
        self.job = job
        self.path = path
        self.header = job.results_header()
        self.done: dict[int, str] = {}  # row number → status
        self._file: TextIO | None = None

    def load(self) -> None:
        """Reads what earlier runs recorded and rewrites it cleanly (a line cut short by a crash is
        dropped: its chunk is sent again, and replayed)."""
        if not self.path.exists():
            return
        text = self.path.read_bytes().decode("utf-8")
        records = list(csv.reader(io.StringIO(text, newline="")))
        if not records:
            return
        if records[0] != self.header:
            raise CsvError(
                f"{self.path} is not a results file of this input (its columns differ). "
                "Delete it, or pass --out to write the results elsewhere."
            )
        body = records[1:]
        if body and not text.endswith("\n"):
            body.pop()  # the write of the last chunk was cut short: that chunk is sent (replayed) again
        for index, record in enumerate(body):
            row = self._row_number(record)
            if row is None:
                raise CsvError(f"{self.path}: line {index + 2} is not a results line of this input.")
            self.done[row] = record[self.header.index("status")]
        self._rewrite(body)

    def _row_number(self, record: Sequence[str]) -> int | None:
        if len(record) != len(self.header):
            return None
        values = dict(zip(self.header, record, strict=True))
        try:
            row = int(values["row"])
        except ValueError:
            return None
        if row >= 1 and values["idempotency_key"] != self.job.key(self.job.chunk_of(row)):
            raise CsvError(
                f"{self.path} was written for another file or other options (row {row} was sent with another "
                "Idempotency-Key). Delete it, or pass --out to start a separate results file."
            )
        return row if 1 <= row <= self.job.input.rows and values["status"] else None

    def _rewrite(self, records: list[list[str]]) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(self.header)
            writer.writerows(records)
            out.flush()
            os.fsync(out.fileno())
        temporary.replace(self.path)

    def __enter__(self) -> Journal:
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        if fresh:
            self._append([self.header])
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def record(self, lines: list[tuple[Row, list[str]]]) -> None:
        """Appends the chunk's new lines in one write, then flushes and syncs them."""
        new = [(row, outcome) for row, outcome in lines if row.number not in self.done]
        self._append(
            [[str(row.number), *(row.addresses.get(c, "") for c in self.job.input.address_columns), *o] for row, o in new]
        )
        for row, outcome in new:
            self.done[row.number] = outcome[0]

    def _append(self, records: list[list[str]]) -> None:
        assert self._file is not None
        buffer = io.StringIO(newline="")
        csv.writer(buffer).writerows(records)
        self._file.write(buffer.getvalue())
        self._file.flush()
        os.fsync(self._file.fileno())


def outcome_lines(job: Job, chunk: int, rows: list[Row], result: SendResult | None) -> list[tuple[Row, list[str]]]:
    key = job.key(chunk)
    sendable = [row for row in rows if row.addresses]
    if result is not None and len(result.messages) != len(sendable):
        raise InvalidResponseError(
            f"Chunk {chunk + 1}: {len(sendable)} entries sent, {len(result.messages)} outcomes answered.", code="invalid_response"
        )
    outcomes = dict(zip((row.number for row in sendable), result.messages if result else [], strict=True))
    lines: list[tuple[Row, list[str]]] = []
    for row in rows:
        message = outcomes.get(row.number)
        if message is None:
            detail = f"No value in any address column ({', '.join(job.input.address_columns)}); not sent."
            lines.append((row, [SKIPPED, "", "no_address", detail, "", key]))
        else:
            batch_id = result.batch_id if result else ""
            lines.append((row, [message.status, message.id, message.code or "", message.detail or "", batch_id, key]))
    return lines


_ENTRY_FIELD = re.compile(r"^to\[(\d+)\]")


def describe_error(error: MessagingCenterError, rows: list[Row]) -> str:
    """The API's error, with `to[i]` in field names turned into CSV row numbers."""
    sendable = [row for row in rows if row.addresses]

    def field_name(name: str) -> str:
        match = _ENTRY_FIELD.match(name)
        if match and int(match.group(1)) < len(sendable):
            return f"row {sendable[int(match.group(1))].number}" + name[match.end() :]
        return name

    lines = [str(error)]
    lines += [f"  {field_name(name)}: {'; '.join(messages)}" for name, messages in list(error.errors.items())[:10]]
    return "\n".join(lines)


@dataclass
class Summary:
    total: int
    statuses: Counter[str]
    results: Path
    interrupted: bool = False
    error: str | None = None

    @property
    def done(self) -> int:
        return sum(self.statuses.values())

    @property
    def all_accepted(self) -> bool:
        return self.done == self.total and all(status in ACCEPTED_STATUSES for status in self.statuses)

    def text(self) -> str:
        counts = ", ".join(f"{n:,} {status}" for status, n in self.statuses.most_common())
        return f"{self.done:,} of {self.total:,} rows done ({counts or 'none yet'}); results in {self.results}"


def run(client: Client, job: Job, out: Path, *, stderr: TextIO, progress: bool = True) -> Summary:
    """Sends what the journal does not have yet. Ctrl-C and a chunk the API refuses (after the
    client's retries) stop the run with the journal intact (`interrupted`, `error`): a rerun resumes."""
    journal = Journal(job, out)
    # The journal's age, taken before loading it (loading rewrites it): its last chunk's answer.
    last_written = out.stat().st_mtime if out.exists() else time.time()
    journal.load()
    if journal.done:
        stderr.write(f"Resuming: {len(journal.done):,} of {job.input.rows:,} rows already done (from {out}).\n")
        if len(journal.done) < job.input.rows and time.time() - last_written > KEY_LIFETIME_WARNING:
            stderr.write(
                "Warning: the results file is over 23 h old; the server keeps Idempotency-Keys for 24 h, so a chunk whose "
                "answer was lost before then could be sent again.\n"
            )
    summary = Summary(job.input.rows, Counter(journal.done.values()), out)
    bar = Progress(job.input.rows, done=len(journal.done), stream=stderr, enabled=progress)
    try:
        with journal:
            bar.show(force=True)
            for chunk, rows in job.chunks():
                if all(row.number in journal.done for row in rows):
                    continue
                entries = [row.entry() for row in rows if row.addresses]
                result = None
                if entries:
                    try:
                        result = client.messages.send(
                            template=job.template,
                            to=entries,
                            params=job.params or None,
                            priority=job.priority,
                            send_at=job.send_at,
                            ttl=job.ttl,
                            idempotency_key=job.key(chunk),
                        )
                    except MessagingCenterError as error:
                        summary.error = f"rows {rows[0].number:,}-{rows[-1].number:,}: " + describe_error(error, rows)
                        break
                before = len(journal.done)
                journal.record(outcome_lines(job, chunk, rows, result))
                summary.statuses = Counter(journal.done.values())
                bar.advance(len(journal.done) - before)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
    return summary
