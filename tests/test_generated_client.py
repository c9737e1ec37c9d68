"""The OpenAPI schema generates a working client: openapi-python-client (the generator the issue
tried) builds one from `GET /api/schema/`, and it sends a message and reads it back from a real
server (pytest-django's live server on the real database)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_generated_client_sends_a_message_and_reads_it_back(live_server, api, make_template, tmp_path: Path) -> None:
    make_template(api)
    schema = tmp_path / "schema.yaml"
    schema.write_bytes(api.client.get("/api/schema/").content)
    config = tmp_path / "config.yaml"
    config.write_text("project_name_override: mc_generated\npackage_name_override: mc_generated\npost_hooks: []\n")
    generator = Path(sys.executable).with_name("openapi-python-client")
    command = [str(generator), "generate", "--path", str(schema), "--output-path", str(tmp_path / "out"), "--meta", "none"]
    path = str(generator.parent) + os.pathsep + os.environ["PATH"]
    subprocess.run(
        [*command, "--config", str(config)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"PATH": path},
    )
    sys.path.insert(0, str(tmp_path))
    (tmp_path / "out").rename(tmp_path / "mc_generated")
    try:
        from mc_generated import AuthenticatedClient  # type: ignore[import-not-found]
        from mc_generated.api.messages import messages_get, messages_send  # type: ignore[import-not-found]
        from mc_generated.models import SendRequest  # type: ignore[import-not-found]

        client = AuthenticatedClient(base_url=live_server.url, token=api.key)
        body = SendRequest.from_dict(
            {"template": "order_shipped", "to": {"phone": "+8613800138000"}, "params": {"order_no": "G1"}}
        )
        sent = messages_send.sync_detailed(client=client, body=body)
        assert sent.status_code == 202, sent.content
        [outcome] = sent.parsed.messages
        assert str(outcome.status) == "queued"
        message = messages_get.sync(client=client, message_id=outcome.id)
        assert message.id == outcome.id and message.content == "Your order G1 has shipped."
        assert message.to.phone == "+8613800138000"
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "mc_generated" or m.startswith("mc_generated.")]:
            del sys.modules[name]
