"""`mc` against the live service: commands run in-process through `main()`, and as the installed
console script in a subprocess for the interrupted 10,000-row CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from messaging_center_client import Client
from messaging_center_client.cli import csv_send, main

from apps.dispatch.models import Message
from tests.helpers import BIN, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def mc_cli(api: Any, live_server: Any) -> Callable[..., Run]:
    """`mc …` in-process as the `orders` account."""

    def run(*argv: str, account: Any = None) -> Run:
        stdout, stderr = io.StringIO(), io.StringIO()
        key = (account or api).key
        code = main(["--base-url", live_server.url, "--api-key", key, *argv], stdout=stdout, stderr=stderr)
        return Run(code, stdout.getvalue(), stderr.getvalue())

    return run


def write_csv(path: Path, rows: int, *, first: int = 0, header: str = "phone,n") -> Path:
    lines = [header, *(f"+86139{first + i:08d},{i}" for i in range(rows))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def results(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def messages_of(account: Any) -> dict[str, str]:
    """Public id → address of every message of the account in the database."""
    return {m.public_id: m.address for m in Message.objects.filter(account=account.account).only("id", "address")}


def test_send_status_search_and_json(mc_cli: Callable[..., Run], sms_template: Any) -> None:
    sent = mc_cli("send", "-t", "notice", "--to", "+8613900000001", "--to", "phone=+8613900000002", "-p", "n=5")
    assert sent.code == 0, sent.err
    assert "2 accepted" in sent.out and sent.out.count("queued") == 2

    as_json = mc_cli("send", "-t", "notice", "--to", "+8613900000003", "-p", "n=6", "--json")
    body = json.loads(as_json.out)
    message_id, batch_id = body["messages"][0]["id"], body["batch_id"]

    status = mc_cli("status", message_id)
    assert status.code == 0 and message_id in status.out
    assert "Your code 6 is ready." in status.out and "events" in status.out and "queued" in status.out
    assert json.loads(mc_cli("status", message_id, "--json").out)["id"] == message_id

    found = mc_cli("search", "--batch-id", batch_id)
    assert found.code == 0 and message_id in found.out and "+8613900000003" in found.out
    assert "1 message" in found.err
    everything = mc_cli("search", "--template", "notice", "--json", "--all")
    assert len(everything.out.splitlines()) == 3 and all(
        json.loads(line)["template"] == "notice" for line in everything.out.splitlines()
    )
    assert len(mc_cli("search", "--limit", "2").out.splitlines()) == 3  # header + 2

    rejected = mc_cli("send", "-t", "notice", "--to", "+861", "-p", "n=1")
    assert rejected.code == 3 and "invalid_address" in rejected.out


def test_errors_print_the_code_and_exit_1(mc_cli: Callable[..., Run], sms_template: Any, api: Any) -> None:
    missing = mc_cli("send", "-t", "nope", "--to", "+8613900000001")
    assert missing.code == 1 and "404 template_not_found" in missing.err
    invalid = mc_cli("send", "-t", "notice", "--to", "+8613900000001", "-p", "n=1", "--priority", "bulk", "--ttl", "0")
    assert invalid.code == 1 and "validation_error" in invalid.err and "ttl:" in invalid.err
    assert mc_cli("status", "msg_nothing").code == 1
    unusable = main(["--base-url", "http://127.0.0.1:9", "--api-key", "k", "--max-retries", "0", "stats"], stderr=io.StringIO())
    assert unusable == 1


def test_tail_follows_a_batch_until_every_message_is_final(mc: Client, mc_cli: Callable[..., Run], sms_template: Any) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=20)  # scheduled: within the 30 days ahead a send may be
    batch = mc.messages.send(
        template="notice", to=[{"phone": "+8613900000001"}, {"phone": "+861"}], params={"n": "1"}, send_at=later
    )
    assert [m.status for m in batch.messages] == ["scheduled", "rejected"]
    timer = threading.Timer(0.5, mc.messages.cancel, [batch.messages[0].id])
    timer.start()
    try:
        tail = mc_cli("tail", batch.batch_id, "--interval", "0.2", "--timeout", "20")
    finally:
        timer.join()
    assert tail.code == 0, tail.err
    assert "scheduled -> canceled" in tail.out
    assert "2 messages, all final: " in tail.out and "1 canceled" in tail.out and "1 rejected" in tail.out
    unknown = mc_cli("tail", "bat_0000000000000000000000", "--timeout", "1")
    assert unknown.code == 1


def test_verify_send_and_check(mc_cli: Callable[..., Run], api: Any, make_template: Any) -> None:
    make_template(api, code="login_code", category="verification", content="Your code is {{code}}.")
    sent = mc_cli("verify", "send", "--to", "+8613900000001", "-t", "login_code", "--json")
    assert sent.code == 0 and json.loads(sent.out)["message_id"].startswith("msg_")
    wrong = mc_cli("verify", "check", "--to", "+8613900000001", "--code", "000000")
    assert (wrong.code, wrong.out.strip()) == (3, "not valid: invalid")


def test_stats_table(mc_cli: Callable[..., Run], sms_template: Any) -> None:
    mc_cli("send", "-t", "notice", "--to", "+8613900000001", "--to", "+861", "-p", "n=1")
    table = mc_cli("stats", "--group-by", "channel")
    assert table.code == 0
    header, row = table.out.splitlines()
    assert header.split()[:4] == ["KEY", "TOTAL", "SENT", "DELIVERED"]
    assert row.split()[:2] == ["sms", "2"] and row.split()[8] == "1"  # one rejected
    assert json.loads(mc_cli("stats", "--json").out)["groups"][0]["total"] == 2


def test_csv_rows_without_an_address_are_skipped_and_columns_become_params(
    mc_cli: Callable[..., Run], api: Any, sms_template: Any, tmp_path: Path
) -> None:
    source = tmp_path / "people.csv"
    source.write_text("name,phone,n,user_id\nA,+8613900000001,1,\nB,,2,\nC,+861,3,\n", encoding="utf-8")
    run = mc_cli("send", "--csv", str(source), "-t", "notice")
    assert run.code == 3, run.err  # not every row was accepted
    rows = results(tmp_path / "people.csv.results.csv")
    assert [(r["row"], r["phone"], r["status"], r["code"]) for r in rows] == [
        ("1", "+8613900000001", "queued", ""),
        ("2", "", "skipped", "no_address"),
        ("3", "+861", "rejected", "invalid_address"),
    ]
    assert set(messages_of(api)) == {rows[0]["message_id"], rows[2]["message_id"]}  # the rejected row is stored too
    assert Message.objects.get(address="+8613900000001").content == "Your code 1 is ready."
    assert "3 of 3 rows done (1 queued, 1 skipped, 1 rejected)" in run.out


def test_csv_chunk_whose_answer_was_lost_is_replayed_not_sent_again(
    mc_cli: Callable[..., Run], api: Any, sms_template: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_csv(tmp_path / "batch.csv", 250)
    record = csv_send.Journal.record
    calls = []

    def lose_the_third_answer(journal: csv_send.Journal, lines: Any) -> None:
        calls.append(len(lines))
        if len(calls) == 3:  # the server has committed chunk 3; Ctrl-C before it is written down
            raise KeyboardInterrupt
        record(journal, lines)

    monkeypatch.setattr(csv_send.Journal, "record", lose_the_third_answer)
    first = mc_cli("send", "--csv", str(source), "-t", "notice", "--batch-size", "50")
    assert first.code == 130 and "Interrupted: 100 of 250 rows done" in first.err
    assert len(messages_of(api)) == 150 and len(results(tmp_path / "batch.csv.results.csv")) == 100

    monkeypatch.setattr(csv_send.Journal, "record", record)
    second = mc_cli("send", "--csv", str(source), "-t", "notice", "--batch-size", "50")
    assert second.code == 0, second.err
    assert "Resuming: 100 of 250 rows already done" in second.err
    rows = results(tmp_path / "batch.csv.results.csv")
    stored = messages_of(api)
    assert len(stored) == 250  # chunk 3 was replayed by the server, not sent again
    assert [int(r["row"]) for r in rows] == list(range(1, 251))
    assert {r["message_id"]: r["phone"] for r in rows} == stored


def test_csv_resume_after_a_torn_write_and_refusal_of_a_foreign_results_file(
    mc_cli: Callable[..., Run], api: Any, sms_template: Any, tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "batch.csv", 30)
    out = tmp_path / "out.csv"
    assert mc_cli("send", "--csv", str(source), "-t", "notice", "--batch-size", "10", "--out", str(out)).code == 0
    complete = out.read_bytes()
    out.write_bytes(complete[:-15])  # the last line cut short, as by a crash mid-write
    again = mc_cli("send", "--csv", str(source), "-t", "notice", "--batch-size", "10", "--out", str(out))
    assert again.code == 0 and "Resuming: 29 of 30 rows already done" in again.err
    assert out.read_bytes() == complete and len(messages_of(api)) == 30

    write_csv(source, 31)  # another file: its rows would get other keys
    foreign = mc_cli("send", "--csv", str(source), "-t", "notice", "--batch-size", "10", "--out", str(out))
    assert foreign.code == 2 and "was written for another file or other options" in foreign.err
    assert len(messages_of(api)) == 30


def test_csv_of_10000_rows_interrupted_and_resumed_sends_each_row_once(
    live_server: Any, make_api_client: Callable[..., Any], make_template: Any, tmp_path: Path
) -> None:
    # A rate of 1 request/s: the first chunk goes at once, later ones wait for Retry-After, so that
    # the Ctrl-C lands mid-run (while a request is in flight or waiting) rather than after the end (at
    # 3/s the ten chunks were done within the moment the test took to notice the first).
    account = make_api_client("campaigns", rate_limit=1)
    make_template(account, code="notice", content="Your code {{n}} is ready.")
    source = write_csv(tmp_path / "customers.csv", 10_000)
    out = tmp_path / "customers.csv.results.csv"
    env = os.environ | {"MC_BASE_URL": live_server.url, "MC_API_KEY": account.key}
    argv = [str(BIN / "mc"), "send", "--csv", str(source), "--template", "notice"]

    # SIGINT at its default in the CLI: a suite started in the background by a shell inherits it ignored.
    process = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Interrupted once the service has the second chunk (so the first one's answer is in the results)
    # or the results show one, well before the last of the ten throttled chunks.
    wait_until(
        lambda: (
            Message.objects.filter(account=account.account).count() >= 2000
            or (out.exists() and out.read_text().count("\n") > 1000)
            or process.poll() is not None
        ),
        60,
        "a chunk accepted",
        interval=0.02,
    )
    process.send_signal(signal.SIGINT)
    _, interrupted = process.communicate(timeout=60)
    assert process.returncode == 130, interrupted
    assert "Interrupted:" in interrupted and "Run the same command again to resume" in interrupted
    done_before = len(results(out))
    assert 1000 <= done_before < 10_000

    rerun = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert f"Resuming: {done_before:,} of 10,000 rows already done" in rerun.stderr
    assert "10,000/10,000 100%" in rerun.stderr and "rows/s" in rerun.stderr and "ETA" in rerun.stderr
    assert "10,000 of 10,000 rows done (10,000 queued)" in rerun.stdout

    rows = results(out)
    assert sorted(int(r["row"]) for r in rows) == list(range(1, 10_001))
    stored = messages_of(account)
    assert len(stored) == 10_000 and len(set(stored.values())) == 10_000
    assert {r["message_id"]: r["phone"] for r in rows} == stored
