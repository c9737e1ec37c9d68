"""The OpenAPI schema is whole and says what the API answers: it validates without a warning, names the
contract's status codes, error body, Bearer scheme and filters, its operation ids are stable, and the
bodies real requests get back match it field for field. The docs pages load nothing from outside."""

from __future__ import annotations

import copy
import datetime as dt
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from apps.dispatch.models import Message
from apps.dispatch.selectors import SEARCH_FILTERS
from messaging_center import ids
from tests.conftest import ApiClient

Schema = dict[str, Any]

OPERATION_IDS = {
    ("GET", "/api/v1/"): "api_root",
    ("GET", "/api/v1/account"): "account_get",
    ("PATCH", "/api/v1/account"): "account_update",
    ("GET", "/api/v1/recipients/{user_id}"): "recipients_get",
    ("PUT", "/api/v1/recipients/{user_id}"): "recipients_put",
    ("GET", "/api/v1/recipients/{user_id}/preferences"): "recipients_preferences_get",
    ("PATCH", "/api/v1/recipients/{user_id}/preferences"): "recipients_preferences_update",
    ("GET", "/api/v1/templates"): "templates_list",
    ("POST", "/api/v1/templates"): "templates_create",
    ("GET", "/api/v1/templates/{code}"): "templates_get",
    ("PATCH", "/api/v1/templates/{code}"): "templates_update",
    ("DELETE", "/api/v1/templates/{code}"): "templates_delete",
    ("POST", "/api/v1/templates/{code}/preview"): "templates_preview",
    ("POST", "/api/v1/messages"): "messages_send",
    ("GET", "/api/v1/messages"): "messages_list",
    ("GET", "/api/v1/messages/{message_id}"): "messages_get",
    ("POST", "/api/v1/messages/{message_id}/cancel"): "messages_cancel",
    ("GET", "/api/v1/recipients/{user_id}/inbox"): "inbox_list",
    ("POST", "/api/v1/recipients/{user_id}/inbox/{message_id}/read"): "inbox_read",
    ("POST", "/api/v1/recipients/{user_id}/inbox/read-all"): "inbox_read_all",
    ("POST", "/api/v1/verifications"): "verifications_send",
    ("POST", "/api/v1/verifications/check"): "verifications_check",
    ("GET", "/api/v1/stats"): "stats_get",
}


@pytest.fixture(scope="module")
def schema() -> Schema:
    return SchemaGenerator().get_schema(request=None, public=True)


def _operations(schema: Schema) -> dict[str, tuple[str, str, Schema]]:
    """operationId → (method, path, operation)."""
    return {
        operation["operationId"]: (method.upper(), path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
    }


def _operation(schema: Schema, operation_id: str) -> Schema:
    return _operations(schema)[operation_id][2]


# --- the schema itself ---------------------------------------------------------------------------


def test_the_schema_validates_without_warnings(tmp_path: Path) -> None:
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert out.read_text().startswith("openapi: 3")


def test_operation_ids_are_unique_stable_and_readable(schema: Schema) -> None:
    found = [
        (method.upper(), path, operation["operationId"])
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
    ]
    ids_only = [operation_id for *_, operation_id in found]
    assert len(ids_only) == len(set(ids_only))
    assert {(method, path): operation_id for method, path, operation_id in found} == OPERATION_IDS


def test_provider_receipt_receivers_are_not_part_of_the_clients_api(schema: Schema) -> None:
    assert not [path for path in schema["paths"] if "/receipts" in path]


def test_send_takes_template_and_to_and_answers_202(schema: Schema) -> None:
    operation = _operation(schema, "messages_send")
    components = schema["components"]["schemas"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    request = components[body["$ref"].rsplit("/", 1)[1]]
    assert {"template", "to"} <= set(request["required"])
    entry = {"$ref": "#/components/schemas/SendEntry"}
    assert request["properties"]["to"]["oneOf"] == [entry, {"type": "array", "items": entry, "minItems": 1, "maxItems": 1000}]
    assert operation["requestBody"]["required"] is True
    statuses = set(operation["responses"])
    assert "202" in statuses and not statuses & {"200", "201"}
    assert [p["name"] for p in operation["parameters"] if p["in"] == "header"] == ["Idempotency-Key"]


def test_real_status_codes_are_documented(schema: Schema) -> None:
    success = {
        operation_id: sorted(code for code in operation["responses"] if code.startswith("2"))
        for operation_id, (_, _, operation) in _operations(schema).items()
    }
    assert success["messages_send"] == ["202"]
    assert success["verifications_send"] == ["202"]
    assert success["templates_create"] == ["201"]
    assert success["templates_delete"] == ["204"]
    assert "content" not in _operation(schema, "templates_delete")["responses"]["204"]
    assert all(codes == ["200"] for name, codes in success.items() if name not in {
        "messages_send", "verifications_send", "templates_create", "templates_delete"
    })  # fmt: skip


def test_the_error_component_is_the_contracts_body(schema: Schema) -> None:
    error = schema["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"code", "detail", "errors"}
    assert set(error["required"]) == {"code", "detail"}
    for operation_id, (_, _, operation) in _operations(schema).items():
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, (
                    operation_id,
                    status,
                )


def _codes(operation: Schema, status: str) -> set[str]:
    """The error codes an operation documents for a status (one example per code)."""
    examples = operation["responses"][status]["content"]["application/json"]["examples"]
    return {example["value"]["code"] for example in examples.values()}


def test_each_operation_names_the_error_codes_it_answers(schema: Schema) -> None:
    for operation_id, (_, path, operation) in _operations(schema).items():
        if operation_id == "api_root":
            continue
        assert _codes(operation, "401") == {"not_authenticated"}
        assert _codes(operation, "403") == {"account_disabled"}
        assert "rate_limited" in _codes(operation, "429")
        assert "Retry-After" in operation["responses"]["429"]["headers"]
        if "requestBody" in operation:
            assert {"413", "415"} <= set(operation["responses"]), operation_id
            assert "validation_error" in _codes(operation, "400")
        if "{" in path and operation_id not in {"recipients_put", "inbox_list", "inbox_read_all"}:  # no lookup
            assert "404" in operation["responses"], operation_id
    send = _operation(schema, "messages_send")
    assert _codes(send, "400") == {"validation_error", "too_many_recipients", "missing_params"}
    assert _codes(send, "404") == {"template_not_found"}
    assert _codes(send, "409") == {"idempotency_conflict"}
    assert _codes(send, "429") == {"rate_limited", "quota_exceeded"}
    assert _codes(send, "503") == {"unavailable"}
    assert _codes(_operation(schema, "messages_cancel"), "409") == {"not_cancelable"}
    assert _codes(_operation(schema, "messages_get"), "404") == {"not_found"}
    assert _codes(_operation(schema, "templates_get"), "404") == {"template_not_found"}


def test_bearer_security_is_declared_and_required(schema: Schema) -> None:
    [(name, scheme)] = schema["components"]["securitySchemes"].items()
    assert (name, scheme["type"], scheme["scheme"]) == ("bearerAuth", "http", "bearer")
    for operation_id, (_, _, operation) in _operations(schema).items():
        expected = [{}] if operation_id == "api_root" else [{"bearerAuth": []}]
        assert operation["security"] == expected, operation_id


def test_lists_document_their_filters_and_cursor(schema: Schema) -> None:
    def query(operation_id: str) -> dict[str, Schema]:
        return {p["name"]: p for p in _operation(schema, operation_id)["parameters"] if p["in"] == "query"}

    messages = query("messages_list")
    assert set(messages) == {*SEARCH_FILTERS, "limit", "cursor"}
    assert messages["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}
    assert "scheduled" in messages["status"]["schema"]["enum"]
    assert messages["created_after"]["schema"] == {"type": "string", "format": "date-time"}
    assert {"limit", "cursor", "channel", "category", "status"} <= set(query("templates_list"))
    assert {"limit", "cursor", "unread"} <= set(query("inbox_list"))
    assert {"group_by", "created_after", "created_before"} <= set(query("stats_get"))
    page = schema["components"]["schemas"]["MessagePage"]
    assert page["properties"]["next"]["nullable"] is True
    assert page["properties"]["results"]["items"] == {"$ref": "#/components/schemas/MessageSummary"}


# --- the schema against what the API answers ----------------------------------------------------


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 → JSON Schema for checking bodies: `nullable` becomes a null alternative, and an
    object with documented properties allows no others (an undocumented field fails the check)."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _json_schema(value) for key, value in node.items() if key not in {"example", "examples"}}
    if "properties" in node and node.get("type") == "object":
        node.setdefault("additionalProperties", False)
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


class Checker:
    """Checks bodies against the schema's components."""

    def __init__(self, schema: Schema) -> None:
        self.components = _json_schema(copy.deepcopy(schema["components"]))
        self.operations = _operations(schema)

    def body(self, body: Any, node: Schema) -> None:
        jsonschema.Draft202012Validator({**_json_schema(node), "components": self.components}).validate(body)

    def __call__(self, response: Any, operation_id: str) -> None:
        """The response's status is documented for the operation and its body matches."""
        responses = self.operations[operation_id][2]["responses"]
        status = str(response.status_code)
        assert status in responses, (operation_id, status, response.content[:300])
        content = responses[status].get("content")
        if content is None:
            assert response.content == b""
            return
        self.body(response.json(), content["application/json"]["schema"])


@pytest.fixture(scope="module")
def check(schema: Schema) -> Checker:
    return Checker(schema)


def test_every_example_matches_its_schema(schema: Schema, check: Checker) -> None:
    checked = 0
    for _, _, operation in _operations(schema).values():
        bodies = [operation.get("requestBody", {}).get("content", {}).get("application/json")]
        bodies += [response.get("content", {}).get("application/json") for response in operation["responses"].values()]
        for body in filter(None, bodies):
            for example in body.get("examples", {}).values():
                check.body(example["value"], body["schema"])
                checked += 1
    assert checked > 40


@pytest.mark.django_db
def test_answers_match_the_schema(api: ApiClient, check: Checker) -> None:
    check(Client().get("/api/v1/account"), "account_get")
    check(api.get("/api/v1/account"), "account_get")
    check(api.patch("/api/v1/account", {"callback_url": "https://orders.example.com/mc"}), "account_update")
    check(api.patch("/api/v1/account", {"callback_url": 5}), "account_update")

    template = {"code": "order_shipped", "name": "Order shipped", "channel": "sms", "category": "transactional"}
    check(api.post("/api/v1/templates", {**template, "content": "Your order {{order_no}} has shipped."}), "templates_create")
    check(api.post("/api/v1/templates", {**template, "content": "Again."}), "templates_create")
    check(api.get("/api/v1/templates", {"limit": 1}), "templates_list")
    check(api.get("/api/v1/templates/order_shipped"), "templates_get")
    check(api.get("/api/v1/templates/nope"), "templates_get")
    check(api.patch("/api/v1/templates/order_shipped", {"ttl": 600, "priority": None}), "templates_update")
    check(api.post("/api/v1/templates/order_shipped/preview", {"params": {"order_no": "A1"}}), "templates_preview")
    check(api.post("/api/v1/templates/order_shipped/preview", {}), "templates_preview")
    code = {"code": "login_code", "name": "Login", "channel": "sms", "category": "verification", "content": "Code {{code}}"}
    check(api.post("/api/v1/templates", code), "templates_create")

    check(api.put("/api/v1/recipients/u42", {"phone": "+8613800138001", "timezone": "Asia/Shanghai"}), "recipients_put")
    check(api.get("/api/v1/recipients/u42"), "recipients_get")
    check(api.get("/api/v1/recipients/nobody"), "recipients_get")
    check(api.get("/api/v1/recipients/u42/preferences"), "recipients_preferences_get")
    check(api.patch("/api/v1/recipients/u42/preferences", {"marketing": {"sms": False}}), "recipients_preferences_update")

    later = (timezone.now() + dt.timedelta(hours=2)).isoformat()
    sent = api.post(
        "/api/v1/messages",
        {
            "template": "order_shipped",
            "to": [{"phone": "+8613800138000"}, {"user_id": "u42"}, {"phone": "12"}],
            "params": {"order_no": "A1"},
            "send_at": later,
        },
        HTTP_IDEMPOTENCY_KEY="schema-test",
    )
    check(sent, "messages_send")
    outcomes = sent.json()["messages"]
    assert [o["status"] for o in outcomes] == ["scheduled", "scheduled", "rejected"]
    check(api.post("/api/v1/messages", {"template": "nope", "to": {"phone": "+8613800138000"}}), "messages_send")
    check(api.post("/api/v1/messages", {"template": "order_shipped", "to": []}), "messages_send")
    check(api.get("/api/v1/messages", {"batch_id": sent.json()["batch_id"], "limit": 2}), "messages_list")
    check(api.get("/api/v1/messages", {"created_after": "yesterday"}), "messages_list")
    check(api.get(f"/api/v1/messages/{outcomes[2]['id']}"), "messages_get")
    check(api.post(f"/api/v1/messages/{outcomes[0]['id']}/cancel"), "messages_cancel")
    check(api.post(f"/api/v1/messages/{outcomes[0]['id']}/cancel"), "messages_cancel")
    check(api.get(f"/api/v1/messages/{outcomes[0]['id']}"), "messages_get")

    inbox = {"code": "notice", "name": "Notice", "channel": "inbox", "category": "transactional", "content": "Hi", "title": "Hi"}
    check(api.post("/api/v1/templates", inbox), "templates_create")
    stored = api.post("/api/v1/messages", {"template": "notice", "to": {"user_id": "u42"}, "send_at": later})
    item = stored.json()["messages"][0]["id"]
    Message.objects.filter(id=ids.decode("msg", item)).update(status="delivered")
    check(api.get("/api/v1/recipients/u42/inbox", {"unread": "true"}), "inbox_list")
    check(api.post(f"/api/v1/recipients/u42/inbox/{item}/read"), "inbox_read")
    check(api.post("/api/v1/recipients/u42/inbox/msg_nope/read"), "inbox_read")
    check(api.post("/api/v1/recipients/u42/inbox/read-all"), "inbox_read_all")

    check(api.post("/api/v1/verifications", {"to": {"phone": "+8613800138002"}, "template": "login_code"}), "verifications_send")
    check(api.post("/api/v1/verifications/check", {"to": {"phone": "+8613800138002"}, "code": "000000"}), "verifications_check")

    check(api.get("/api/v1/stats", {"group_by": "template"}), "stats_get")
    check(api.get("/api/v1/stats", {"group_by": "nope"}), "stats_get")
    check(api.delete("/api/v1/templates/order_shipped"), "templates_delete")


# --- docs and the API root ------------------------------------------------------------------------

_LOADS = re.compile(r"""<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)\"""")


@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_docs_pages_load_only_bundled_files(page: str) -> None:
    response = Client().get(page)
    assert response.status_code == 200
    html = response.content.decode()
    assert "https://" not in html and "http://" not in html and "cdn." not in html
    loaded = _LOADS.findall(html)
    assert loaded
    for url in loaded:
        assert url.startswith(("/static/drf_spectacular_sidecar/", f"{page}?")), url
        asset = Client().get(url.replace("&amp;", "&"))
        assert asset.status_code == 200, url
        text = b"".join(asset.streaming_content) if asset.streaming else asset.content
        assert len(text) > 100, url


def test_swagger_ui_starts_from_its_own_script_on_our_schema() -> None:
    script = Client().get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    text = script.content.decode()
    assert "SwaggerUIBundle" in text and '"/api/schema/"' in text
    assert "https://" not in text


def test_the_api_root_links_without_a_key(schema: Schema) -> None:
    response = Client().get("/api/v1/")
    assert response.status_code == 200
    links = response.json()
    documented = _operation(schema, "api_root")["responses"]["200"]["content"]["application/json"]["examples"]
    assert links == next(iter(documented.values()))["value"]
    assert links["schema"] == "/api/schema/" and links["docs"] == "/api/docs/" and links["messages"] == "/api/v1/messages"
    for name, url in links.items():
        status = Client().get(url).status_code
        assert status == (200 if name in {"schema", "docs", "redoc"} else 401), (name, url, status)
