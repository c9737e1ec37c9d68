from __future__ import annotations

import pytest

from apps.templates.models import MessageTemplate

pytestmark = pytest.mark.django_db

SHIPPED = {
    "code": "order_shipped",
    "name": "Order shipped",
    "channel": "sms",
    "category": "transactional",
    "content": "Your order {{order_no}} has shipped, {{ name }}. Order {{order_no}}.",
    "sms_signature": "ACME",
    "provider_template_ids": {"aliyun": "SMS_1234", "tencent": "100234"},
}


def _create(api, **overrides):
    response = api.post("/api/v1/templates", {**SHIPPED, **overrides})
    assert response.status_code == 201, response.json()
    return response.json()


def _assert_400(response, code: str = "validation_error", field: str | None = None) -> dict:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == code, body
    assert body["detail"]
    if field is not None:
        assert field in body["errors"], body
    return body


def test_create_returns_201_with_variables_in_order_and_category_defaults(api) -> None:
    body = _create(api)
    assert body["code"] == "order_shipped"
    assert body["variables"] == ["order_no", "name"]
    assert body["priority"] == "high"
    assert body["ttl"] == 3600
    assert body["dedup_window"] == 0
    assert body["frequency_limits"] == []
    assert body["status"] == "active"
    assert body["provider_template_ids"] == {"aliyun": "SMS_1234", "tencent": "100234"}
    assert body["id"].startswith("tpl_")
    assert body["created_at"].endswith(("Z", "+00:00", "+08:00"))
    assert api.get("/api/v1/templates/order_shipped").json() == body


@pytest.mark.parametrize(
    ("category", "priority", "ttl", "dedup", "limits"),
    [
        (
            "verification",
            "critical",
            300,
            300,
            [{"limit": 1, "window": 60}, {"limit": 5, "window": 3600}, {"limit": 10, "window": 86400}],
        ),
        ("transactional", "high", 3600, 0, []),
        ("marketing", "bulk", 3600, 3600, [{"limit": 3, "window": 86400}]),
    ],
)
def test_category_defaults(api, category: str, priority: str, ttl: int, dedup: int, limits: list) -> None:
    body = _create(api, category=category, content="Code {{code}}", provider_template_ids={})
    assert (body["priority"], body["ttl"], body["dedup_window"], body["frequency_limits"]) == (priority, ttl, dedup, limits)


def test_overrides_are_kept_and_null_goes_back_to_the_default(api) -> None:
    body = _create(
        api,
        category="marketing",
        priority="normal",
        ttl=600,
        dedup_window=0,
        frequency_limits=[{"limit": 1, "window": 3600}],
    )
    assert (body["priority"], body["ttl"], body["dedup_window"]) == ("normal", 600, 0)
    assert body["frequency_limits"] == [{"limit": 1, "window": 3600}]
    reset = api.patch(
        "/api/v1/templates/order_shipped", {"priority": None, "ttl": None, "dedup_window": None, "frequency_limits": None}
    ).json()
    assert (reset["priority"], reset["ttl"], reset["dedup_window"]) == ("bulk", 3600, 3600)
    assert reset["frequency_limits"] == [{"limit": 3, "window": 86400}]


def test_content_without_variables_is_fine(api) -> None:
    assert _create(api, content="Our shop opens at nine.")["variables"] == []


def test_title_only_variables_follow_the_content_ones(api) -> None:
    body = _create(api, channel="email", title="Hello {{name}}, {{shop}}", content="Order {{order_no}} for {{name}}")
    assert body["variables"] == ["order_no", "name", "shop"]


def test_duplicate_code_is_400(api) -> None:
    _create(api)
    _assert_400(api.post("/api/v1/templates", SHIPPED), field="code")


def test_same_code_in_another_account_is_fine(api, make_api_client) -> None:
    _create(api)
    other = make_api_client("billing")
    assert other.post("/api/v1/templates", SHIPPED).status_code == 201


def test_other_accounts_template_is_404(api, make_api_client) -> None:
    _create(api)
    other = make_api_client("billing")
    for response in (
        other.get("/api/v1/templates/order_shipped"),
        other.patch("/api/v1/templates/order_shipped", {"name": "mine"}),
        other.delete("/api/v1/templates/order_shipped"),
        other.post("/api/v1/templates/order_shipped/preview", {"params": {}}),
    ):
        assert response.status_code == 404
        assert response.json()["code"] == "template_not_found"
    assert other.get("/api/v1/templates").json() == {"results": [], "next": None}
    assert api.get("/api/v1/templates/order_shipped").json()["name"] == "Order shipped"


def test_unknown_code_is_404(api) -> None:
    response = api.get("/api/v1/templates/nope")
    assert response.status_code == 404
    assert response.json()["code"] == "template_not_found"


def test_delete_is_soft_and_frees_the_code(api) -> None:
    first = _create(api)
    response = api.delete("/api/v1/templates/order_shipped")
    assert response.status_code == 204
    assert api.get("/api/v1/templates/order_shipped").status_code == 404
    assert api.delete("/api/v1/templates/order_shipped").status_code == 404
    assert api.get("/api/v1/templates").json()["results"] == []
    old = MessageTemplate.objects.get(account=api.account, code="order_shipped")
    assert old.deleted_at is not None

    second = _create(api, content="New text {{order_no}}")
    assert second["id"] != first["id"]
    assert api.get("/api/v1/templates/order_shipped").json()["content"] == "New text {{order_no}}"
    assert MessageTemplate.objects.filter(account=api.account, code="order_shipped").count() == 2


def test_patch_changes_fields_and_recomputes_variables(api) -> None:
    _create(api)
    response = api.patch("/api/v1/templates/order_shipped", {"content": "{{ b }} then {{a}}", "status": "disabled"})
    assert response.status_code == 200
    body = response.json()
    assert body["variables"] == ["b", "a"]
    assert body["status"] == "disabled"
    assert api.get("/api/v1/templates/order_shipped").json()["variables"] == ["b", "a"]


def test_patch_cannot_change_the_code(api) -> None:
    _create(api)
    _assert_400(api.patch("/api/v1/templates/order_shipped", {"code": "other"}), field="code")
    assert api.patch("/api/v1/templates/order_shipped", {"code": "order_shipped", "name": "x"}).status_code == 200


def test_patch_to_verification_requires_code_variable(api) -> None:
    _create(api)
    body = _assert_400(api.patch("/api/v1/templates/order_shipped", {"category": "verification"}), field="content")
    assert "{{code}}" in body["errors"]["content"][0]
    assert api.get("/api/v1/templates/order_shipped").json()["category"] == "transactional"


@pytest.mark.parametrize("field", ["channel", "category", "priority", "status"])
def test_unknown_enum_value_is_400_naming_the_field(api, field: str) -> None:
    _assert_400(api.post("/api/v1/templates", {**SHIPPED, field: "fax"}), field=field)


@pytest.mark.parametrize("field", ["code", "name", "channel", "category", "content"])
def test_missing_required_field_is_400(api, field: str) -> None:
    body = {key: value for key, value in SHIPPED.items() if key != field}
    _assert_400(api.post("/api/v1/templates", body), field=field)


@pytest.mark.parametrize("code", ["order shipped", " order", "a" * 65, "", "a/b", "订单", "-lead"])
def test_bad_code_is_400(api, code: str) -> None:
    _assert_400(api.post("/api/v1/templates", {**SHIPPED, "code": code}), field="code")


def test_code_of_64_characters_is_fine(api) -> None:
    _create(api, code="a" * 64)
    assert api.get("/api/v1/templates/" + "a" * 64).status_code == 200


@pytest.mark.parametrize(
    ("content", "position"),
    [
        ("Hello {{name", 7),
        ("Hello name}} there", 11),
        ("Hi {{a}} and {{b", 14),
        ("{{a}}}}", 6),
    ],
)
def test_unbalanced_braces_are_400_naming_the_position(api, content: str, position: int) -> None:
    body = _assert_400(api.post("/api/v1/templates", {**SHIPPED, "content": content}), field="content")
    assert f"position {position}" in body["errors"]["content"][0]
    assert f"position {position}" in body["detail"]


@pytest.mark.parametrize("content", ["{{user.name}}", "{{ }}", "{{a|upper}}", "{% if a %}x{% endif %}{{1a}}", "{{a b}}"])
def test_logic_or_attribute_access_is_400(api, content: str) -> None:
    _assert_400(api.post("/api/v1/templates", {**SHIPPED, "content": content}), field="content")


def test_verification_template_must_contain_code(api) -> None:
    body = _assert_400(
        api.post("/api/v1/templates", {**SHIPPED, "category": "verification", "content": "Your code is {{otp}}"}),
        field="content",
    )
    assert "{{code}}" in body["detail"]
    assert _create(api, category="verification", content="Your code is {{ code }}")["variables"] == ["code"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ttl", 0),
        ("ttl", "soon"),
        ("dedup_window", -1),
        ("frequency_limits", [{"limit": 0, "window": 60}]),
        ("frequency_limits", {"limit": 1}),
        ("provider_template_ids", ["SMS_1"]),
        ("provider_template_ids", {"aliyun": "1234"}),
        ("provider_template_ids", {"tencent": "T-1"}),
        ("provider_template_ids", {"aliyun": ""}),
        ("provider_template_ids", {"Bad Kind": "x"}),
        ("provider_template_ids", {"wechat": {"template_id": "tpl-1", "fields": {"keyword1": "nope"}}}),
        ("name", ""),
        ("content", ""),
        ("sms_signature", "【A】【B】"),
    ],
)
def test_bad_field_is_400_naming_it(api, field: str, value: object) -> None:
    body = _assert_400(api.post("/api/v1/templates", {**SHIPPED, field: value}))
    assert any(key == field or key.startswith(f"{field}.") or key.startswith(f"{field}[") for key in body["errors"]), body


def test_wechat_template_id_with_field_mapping(api) -> None:
    mapping = {"template_id": "Xb3-abcdef", "fields": {"first": "name", "keyword1": "order_no"}}
    body = _create(api, channel="wechat", title="Shipped", provider_template_ids={"wechat": mapping})
    assert body["provider_template_ids"]["wechat"] == mapping


def test_signature_given_with_brackets_is_stored_without(api) -> None:
    assert _create(api, sms_signature="【ACME】")["sms_signature"] == "ACME"


def test_malformed_json_is_400(api) -> None:
    response = api.client.post(
        "/api/v1/templates", "{oops", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api.key}"
    )
    _assert_400(response)


def test_list_paginates_with_an_opaque_cursor(api) -> None:
    for index in range(7):
        _create(api, code=f"t{index}")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = api.get("/api/v1/templates", params).json()
        assert set(body) == {"results", "next"}
        seen += [row["code"] for row in body["results"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == 3
    # Newest first; UUIDv7 ids order by creation time (two created in one millisecond: either way).
    newest_first = list(MessageTemplate.objects.filter(account=api.account).order_by("-id").values_list("code", flat=True))
    assert seen == newest_first
    assert sorted(seen) == [f"t{index}" for index in range(7)]


def test_list_default_limit_is_50(api) -> None:
    for index in range(51):
        _create(api, code=f"t{index}")
    body = api.get("/api/v1/templates").json()
    assert len(body["results"]) == 50
    assert body["next"]
    assert len(api.get("/api/v1/templates", {"cursor": body["next"]}).json()["results"]) == 1


@pytest.mark.parametrize("params", [{"limit": 501}, {"limit": 0}, {"limit": "x"}, {"cursor": "garbage!"}, {"cursor": "AAAA"}])
def test_bad_list_params_are_400(api, params: dict) -> None:
    _assert_400(api.get("/api/v1/templates", params), field=next(iter(params)))


def test_list_filters(api) -> None:
    _create(api, code="a")
    _create(api, code="b", channel="email", category="marketing")
    api.patch("/api/v1/templates/b", {"status": "disabled"})
    assert [row["code"] for row in api.get("/api/v1/templates", {"channel": "email"}).json()["results"]] == ["b"]
    assert [row["code"] for row in api.get("/api/v1/templates", {"status": "active"}).json()["results"]] == ["a"]
    assert [row["code"] for row in api.get("/api/v1/templates", {"category": "marketing"}).json()["results"]] == ["b"]
    _assert_400(api.get("/api/v1/templates", {"channel": "fax"}), field="channel")


def test_list_limit_500_is_accepted(api) -> None:
    _create(api)
    assert len(api.get("/api/v1/templates", {"limit": 500}).json()["results"]) == 1


def test_unauthenticated_is_401(api) -> None:
    from django.test import Client

    assert Client().get("/api/v1/templates").status_code == 401
