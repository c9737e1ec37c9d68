"""`mc`: Messaging Center from the shell. `mc --help`, `mc send --help`, …"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from messaging_center_client._version import __version__
from messaging_center_client.cli import csv_send, listen
from messaging_center_client.cli.output import cell_text, percent, table
from messaging_center_client.client import Client
from messaging_center_client.errors import MessagingCenterError
from messaging_center_client.models import Message

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NEGATIVE = 3  # the API answered, but not everything was accepted / the code is not valid
EXIT_INTERRUPTED = 130

EPILOG = f"""
configuration: MC_BASE_URL and MC_API_KEY, or --base-url and --api-key.
exit status: {EXIT_OK} done; {EXIT_ERROR} an error (the API's code is printed); {EXIT_USAGE} bad usage;
{EXIT_NEGATIVE} answered, but some entries were not accepted (or a code is not valid); {EXIT_INTERRUPTED} interrupted.
"""

ADDRESS_FIELDS = csv_send.ADDRESS_COLUMNS
_PHONE = re.compile(r"^\+?[0-9][0-9 ()-]*$")  # the service validates the number itself


class UsageError(Exception):
    pass


def _address(value: str) -> dict[str, str]:
    """`+8613800138000`, `a@example.com`, or `field=value` for any address field."""
    name, sep, rest = value.partition("=")
    if sep and name in ADDRESS_FIELDS:
        return {name: rest}
    if _PHONE.match(value):
        return {"phone": value}
    if "@" in value:
        return {"email": value}
    raise argparse.ArgumentTypeError(
        f"{value!r}: give a phone number, an e-mail address, or FIELD=VALUE ({', '.join(ADDRESS_FIELDS)})"
    )


def _param(value: str) -> tuple[str, str]:
    name, sep, rest = value.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{value!r}: expected NAME=VALUE")
    return name, rest


def _positive(limit: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = int(value)
        if not 1 <= number <= limit:
            raise argparse.ArgumentTypeError(f"must be from 1 to {limit:,}")
        return number

    return parse


def build_parser() -> argparse.ArgumentParser:
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument("--base-url", default=argparse.SUPPRESS, help="the service, e.g. http://127.0.0.1:8000 (MC_BASE_URL)")
    connection.add_argument("--api-key", default=argparse.SUPPRESS, help="the account's API key (MC_API_KEY)")
    connection.add_argument(
        "--max-retries", type=int, default=argparse.SUPPRESS, help="retries of a refused or broken request (5)"
    )

    parser = argparse.ArgumentParser(
        prog="mc",
        description="Messaging Center from the shell: send, look up, follow and count messages.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[connection],
    )
    parser.add_argument("--version", action="version", version=f"mc {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=help_text,
            description=description or help_text,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[connection],
        )

    send = command(
        "send",
        "send a template to recipients, or to every row of a CSV",
        "Send a template to --to recipients, or to every row of --csv FILE: its phone, email, user_id, wechat_openid, "
        "wecom_userid and push_token columns address the row, every other column is a param. A CSV goes in requests "
        "of up to 1,000 rows with a progress bar; each row's outcome is written to the results file; run the same "
        "command again after an interruption to resume: no row is ever sent twice (resume within 24 h).",
    )
    send.add_argument("--template", "-t", required=True, help="template code")
    send.add_argument("--to", action="append", type=_address, default=[], metavar="ADDRESS", help="a recipient (repeatable)")
    send.add_argument(
        "--param", "-p", action="append", type=_param, default=[], metavar="NAME=VALUE", help="shared param (repeatable)"
    )
    send.add_argument("--csv", type=Path, metavar="FILE", help="recipients, one per row (UTF-8, header line first)")
    send.add_argument("--out", type=Path, metavar="FILE", help="results of --csv (default: FILE.results.csv)")
    send.add_argument(
        "--batch-size", type=_positive(csv_send.MAX_BATCH), default=csv_send.MAX_BATCH, help="rows per request (1,000)"
    )
    send.add_argument("--no-progress", action="store_true", help="no progress bar")
    send.add_argument("--priority", choices=["critical", "high", "normal", "bulk"])
    send.add_argument("--send-at", metavar="TIME", help="ISO 8601 with a zone, e.g. 2026-11-24T09:00:00+08:00")
    send.add_argument("--ttl", type=int, metavar="SECONDS")
    send.add_argument("--idempotency-key", metavar="KEY", help="for a single send (default: a new uuid4)")
    send.add_argument("--json", action="store_true", help="print the API's JSON answer")
    send.set_defaults(run=cmd_send)

    status = command("status", "show a message and its timeline")
    status.add_argument("id", metavar="MESSAGE_ID")
    status.add_argument("--json", action="store_true", help="print the API's JSON answer")
    status.set_defaults(run=cmd_status)

    search = command("search", "list messages matching filters, newest first")
    for name in ("status", "channel", "template", "category", "batch-id", "to", "user-id", "provider"):
        search.add_argument(f"--{name}")
    search.add_argument("--created-after", metavar="TIME")
    search.add_argument("--created-before", metavar="TIME")
    search.add_argument("--q", "-q", metavar="TEXT", help="substring of the content (default: the last 7 days; at most 31)")
    search.add_argument("--limit", type=int, default=50, help="at most this many (50)")
    search.add_argument("--all", action="store_true", help="every match, however many")
    search.add_argument("--json", action="store_true", help="one JSON object per line")
    search.set_defaults(run=cmd_search)

    tail = command("tail", "follow a batch's statuses until every message is final")
    tail.add_argument("batch_id", metavar="BATCH_ID")
    tail.add_argument("--interval", type=float, default=2.0, help="seconds between looks (2)")
    tail.add_argument("--timeout", type=float, help="give up after this many seconds (a `sent` message waits for its receipt)")
    tail.set_defaults(run=cmd_tail)

    verify = command("verify", "send or check a verification code")
    verify_commands = verify.add_subparsers(dest="verify_command", metavar="ACTION", required=True)
    verify_send = verify_commands.add_parser("send", help="send a fresh code", parents=[connection])
    verify_send.add_argument("--to", required=True, type=_address, metavar="ADDRESS")
    verify_send.add_argument("--template", "-t", required=True, help="a verification template (with {{code}})")
    verify_send.add_argument("--json", action="store_true")
    verify_send.set_defaults(run=cmd_verify_send)
    verify_check = verify_commands.add_parser("check", help="check a code (exit 0 when valid, 3 when not)", parents=[connection])
    verify_check.add_argument("--to", required=True, type=_address, metavar="ADDRESS")
    verify_check.add_argument("--code", required=True)
    verify_check.add_argument("--json", action="store_true")
    verify_check.set_defaults(run=cmd_verify_check)

    stats = command("stats", "delivery figures as a table")
    stats.add_argument("--group-by", choices=["provider", "channel", "template", "day", "segment"], default="channel")
    stats.add_argument("--created-after", metavar="TIME")
    stats.add_argument("--created-before", metavar="TIME")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(run=cmd_stats)

    listen.add_parser(commands, [connection])
    return parser


class Context:
    def __init__(self, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> None:
        self.args = args
        self.stdout = stdout
        self.stderr = stderr
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            try:
                self._client = Client(
                    getattr(self.args, "base_url", None),
                    getattr(self.args, "api_key", None),
                    max_retries=getattr(self.args, "max_retries", 5),
                )
            except ValueError as error:
                raise UsageError(str(error)) from None
        return self._client

    def out(self, text: str = "") -> None:
        self.stdout.write(text + "\n")

    def json(self, value: Any) -> None:
        self.out(json.dumps(value, ensure_ascii=False, indent=2))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def cmd_send(ctx: Context) -> int:
    args = ctx.args
    params = dict(args.param)
    if args.csv is not None:
        if args.to or args.idempotency_key or args.json:
            raise UsageError("--csv takes its recipients from the file: leave out --to, --idempotency-key and --json")
        return _send_csv(ctx, params)
    if not args.to:
        raise UsageError("give --to (one or more) or --csv FILE")
    result = ctx.client.messages.send(
        template=args.template,
        to=args.to,
        params=params or None,
        priority=args.priority,
        send_at=args.send_at,
        ttl=args.ttl,
        idempotency_key=args.idempotency_key,
    )
    if args.json:
        ctx.json(dict(result.raw))
    else:
        ctx.out(f"batch {result.batch_id}: {result.accepted} accepted, {result.rejected} not")
        rows = [
            [m.id, _address_text(entry), m.status, m.code, m.detail] for m, entry in zip(result.messages, args.to, strict=False)
        ]
        ctx.out(table(["ID", "TO", "STATUS", "CODE", "DETAIL"], rows))
    return EXIT_OK if all(m.accepted for m in result.messages) else EXIT_NEGATIVE


def _send_csv(ctx: Context, params: dict[str, str]) -> int:
    args = ctx.args
    out = args.out or args.csv.with_name(args.csv.name + ".results.csv")
    try:
        source = csv_send.CsvInput.open(args.csv)
        job = csv_send.Job(source, args.template, params, args.priority, args.send_at, args.ttl, args.batch_size)
        summary = csv_send.run(ctx.client, job, out, stderr=ctx.stderr, progress=not args.no_progress)
    except UnicodeDecodeError:
        raise UsageError(f"{args.csv} is not UTF-8 text: save it as UTF-8 (Excel: 'CSV UTF-8')") from None
    except OSError as error:
        raise UsageError(f"cannot use {args.csv} or {out}: {error}") from None
    except csv_send.CsvError as error:
        raise UsageError(str(error)) from None
    if summary.interrupted:
        ctx.stderr.write(f"Interrupted: {summary.text()}.\nRun the same command again to resume: no row is sent twice.\n")
        return EXIT_INTERRUPTED
    if summary.error:
        ctx.stderr.write(f"error: {summary.error}\nStopped: {summary.text()}.\nRun the same command again to resume.\n")
        return EXIT_ERROR
    ctx.out(summary.text())
    return EXIT_OK if summary.all_accepted else EXIT_NEGATIVE


def _address_text(to: dict[str, Any]) -> str:
    return ", ".join(str(value) for name, value in to.items() if name != "params") or "-"


def cmd_status(ctx: Context) -> int:
    message = ctx.client.messages.get(ctx.args.id)
    if ctx.args.json:
        ctx.json(dict(message.raw))
        return EXIT_OK
    ctx.out(f"{message.id}  {message.status}" + (f"  {message.code}: {message.detail}" if message.code else ""))
    fields = [
        ("batch", message.batch_id),
        ("template", f"{message.template} ({message.channel}, {message.category}, {message.priority})"),
        ("to", _address_text(message.to)),
        ("content", message.content),
        ("provider", message.provider and f"{message.provider} ({message.provider_message_id or '-'})"),
        ("attempts", message.attempts),
        ("segments", message.segments),
        ("created", message.created_at),
        ("scheduled", message.scheduled_at),
        ("sent", message.sent_at),
        ("delivered", message.delivered_at),
        ("expires", message.expires_at),
    ]
    for name, value in fields:
        if value is not None:
            ctx.out(f"  {name:<10} {cell_text(value)}")
    if message.events:
        ctx.out("events")
        rows = [[e.at, e.status, e.provider, e.code, e.detail] for e in message.events]
        ctx.out("\n".join("  " + line for line in table(["AT", "STATUS", "PROVIDER", "CODE", "DETAIL"], rows).splitlines()))
    return EXIT_OK


def cmd_search(ctx: Context) -> int:
    args = ctx.args
    filters: dict[str, Any] = {
        "status": args.status,
        "channel": args.channel,
        "template": args.template,
        "category": args.category,
        "batch_id": args.batch_id,
        "to": args.to,
        "user_id": args.user_id,
        "provider": args.provider,
        "created_after": args.created_after,
        "created_before": args.created_before,
        "q": args.q,
    }
    page_size = 500 if args.all else max(1, min(args.limit, 500))
    found: list[Message] = []
    count = 0
    for message in ctx.client.messages.list(**filters, limit=page_size):
        count += 1
        if args.json:
            ctx.out(json.dumps(dict(message.raw), ensure_ascii=False))
        else:
            found.append(message)
        if not args.all and count >= args.limit:
            break
    if not args.json:
        rows = [[m.id, m.created_at, m.status, m.channel, m.template, _address_text(m.to), m.provider, m.code] for m in found]
        ctx.out(table(["ID", "CREATED", "STATUS", "CHANNEL", "TEMPLATE", "TO", "PROVIDER", "CODE"], rows))
    ctx.stderr.write(f"{count:,} message{'s' if count != 1 else ''}\n")
    return EXIT_OK


def cmd_tail(ctx: Context) -> int:
    args = ctx.args
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    seen: dict[str, str] = {}
    while True:
        messages = sorted(ctx.client.messages.list(batch_id=args.batch_id, limit=500), key=lambda m: m.id)
        if not messages:
            ctx.stderr.write(f"error: no messages in batch {args.batch_id}\n")
            return EXIT_ERROR
        for message in messages:
            before = seen.get(message.id)
            if before != message.status:
                change = f"{before} -> {message.status}" if before else message.status
                extra = " ".join(part for part in (message.provider, message.code, message.detail) if part)
                ctx.out(f"{time.strftime('%H:%M:%S')}  {message.id}  {_address_text(message.to)}  {change}  {extra}".rstrip())
                seen[message.id] = message.status
        pending = [m for m in messages if not m.is_final]
        if not pending:
            counts = Counter(m.status for m in messages)
            ctx.out(f"{len(messages):,} messages, all final: " + ", ".join(f"{n:,} {s}" for s, n in counts.most_common()))
            return EXIT_OK
        if deadline is not None and time.monotonic() >= deadline:
            ctx.stderr.write(f"timed out: {len(pending):,} of {len(messages):,} messages not final yet\n")
            return EXIT_ERROR
        time.sleep(args.interval if deadline is None else max(0.0, min(args.interval, deadline - time.monotonic())))


def cmd_verify_send(ctx: Context) -> int:
    verification = ctx.client.verifications.send(to=ctx.args.to, template=ctx.args.template)
    if ctx.args.json:
        ctx.json(dict(verification.raw))
    else:
        ctx.out(
            f"verification {verification.id}: message {verification.message_id}, expires {cell_text(verification.expires_at)}"
        )
    return EXIT_OK


def cmd_verify_check(ctx: Context) -> int:
    check = ctx.client.verifications.check(to=ctx.args.to, code=ctx.args.code)
    if ctx.args.json:
        ctx.json(dict(check.raw))
    else:
        ctx.out("valid" if check.valid else f"not valid: {check.reason}")
    return EXIT_OK if check.valid else EXIT_NEGATIVE


def cmd_stats(ctx: Context) -> int:
    args = ctx.args
    stats = ctx.client.stats(args.group_by, created_after=args.created_after, created_before=args.created_before)
    if args.json:
        ctx.json(dict(stats.raw))
        return EXIT_OK
    headers = ["KEY", "TOTAL", "SENT", "DELIVERED", "UNDELIV.", "FAILED", "EXPIRED", "SUPPR.", "REJECTED"]
    headers += ["SUCCESS", "TWICE", "RECEIPTS", "DELIVERY", "P50 MS", "P95 MS", "COST"]
    rows = [
        [
            g.key,
            g.total,
            g.sent,
            g.delivered,
            g.undelivered,
            g.failed,
            g.expired,
            g.suppressed,
            g.rejected,
            percent(g.success_rate),
            g.duplicates,
            percent(g.receipt_rate),
            percent(g.delivery_rate),
            None if g.latency_p50_ms is None else round(g.latency_p50_ms),
            None if g.latency_p95_ms is None else round(g.latency_p95_ms),
            g.cost,
        ]
        for g in stats.groups
    ]
    ctx.out(table(headers, rows, numeric=range(1, len(headers))))
    return EXIT_OK


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, --version, usage errors: argparse has printed them
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    ctx = Context(args, out, err)
    try:
        code: int = args.run(ctx)
        return code
    except UsageError as error:
        err.write(f"mc: {error}\n")
        return EXIT_USAGE
    except MessagingCenterError as error:
        err.write(f"error: {error}\n")
        for name, messages in error.errors.items():
            err.write(f"  {name}: {'; '.join(messages)}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return EXIT_INTERRUPTED
    finally:
        ctx.close()
