"""The README's quickstart, verbatim: `make run`'s launcher on a scratch folder, then every shell
block between the quickstart markers run by bash as written, ending with a delivered SMS and two
status callbacks whose signatures `mc listen` verified."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.helpers import BASE_DIR, free_port, launched

pytestmark = pytest.mark.slow


def quickstart_blocks() -> list[str]:
    readme = (BASE_DIR / "README.md").read_text()
    section = readme.split("<!-- quickstart", 1)[1].split("<!-- /quickstart -->", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def test_the_readme_quickstart_works_verbatim(tmp_path) -> None:
    start, *steps = quickstart_blocks()
    assert start.strip() == "make run"  # what the launcher below is
    callback_port = free_port()
    with launched(tmp_path / "data") as run:
        script = "set -euo pipefail\n" + "\n".join(steps)
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=BASE_DIR,
            env=run.env | {"CALLBACK_PORT": str(callback_port)},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert re.search(r"verified: msg_\w+ sent", done.stdout), output
    assert re.search(r"verified: msg_\w+ delivered", done.stdout), output
    assert "REJECTED" not in done.stdout
    assert re.search(r"bat_\w+ \['queued'\]", done.stdout), output  # the SDK's send
    listed = [line for line in done.stdout.splitlines() if line.startswith("msg_")]  # mc search's table
    assert len(listed) == 2 and all("order_shipped" in line for line in listed), output
