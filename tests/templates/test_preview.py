from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def _template(api, **fields) -> str:
    body = {
        "code": "t",
        "name": "T",
        "channel": "sms",
        "category": "transactional",
        "content": "Order {{order_no}} shipped",
        **fields,
    }
    response = api.post("/api/v1/templates", body)
    assert response.status_code == 201, response.json()
    return f"/api/v1/templates/{body['code']}/preview"


def test_sms_preview_counts_segments_and_encoding(api) -> None:
    url = _template(api)
    response = api.post(url, {"params": {"order_no": "A1"}})
    assert response.status_code == 200
    assert response.json() == {"content": "Order A1 shipped", "segments": 1, "encoding": "GSM-7"}


def test_sms_preview_counts_the_signature(api) -> None:
    url = _template(api, content="x" * 63 + "{{n}}", sms_signature="ACME")
    # 【ACME】 makes the text UCS-2 and takes 6 of its 70 characters.
    body = api.post(url, {"params": {"n": "1"}}).json()
    assert (body["content"], body["segments"], body["encoding"]) == ("x" * 63 + "1", 1, "UCS-2")
    body = api.post(url, {"params": {"n": "12"}}).json()
    assert (body["segments"], body["encoding"]) == (2, "UCS-2")


def test_long_gsm_preview(api) -> None:
    url = _template(api, content="{{text}}")
    assert api.post(url, {"params": {"text": "a" * 160}}).json()["segments"] == 1
    assert api.post(url, {"params": {"text": "a" * 161}}).json()["segments"] == 2
    assert api.post(url, {"params": {"text": "€" * 80}}).json() == {"content": "€" * 80, "segments": 1, "encoding": "GSM-7"}
    assert api.post(url, {"params": {"text": "您好"}}).json()["encoding"] == "UCS-2"


def test_numbers_are_rendered_as_text(api) -> None:
    url = _template(api)
    assert api.post(url, {"params": {"order_no": 42}}).json()["content"] == "Order 42 shipped"


def test_missing_params_are_400_naming_them(api) -> None:
    url = _template(api, content="{{a}} {{b}} {{c}}")
    response = api.post(url, {"params": {"b": "x"}})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "missing_params"
    assert "a, c" in body["detail"]
    assert set(body["errors"]) == {"params.a", "params.c"}
    assert api.post(url, {"params": {"a": "1", "b": None, "c": "3"}}).json()["code"] == "missing_params"


def test_preview_without_params_of_a_template_without_variables(api) -> None:
    url = _template(api, content="Hello")
    assert api.post(url).json()["content"] == "Hello"


@pytest.mark.parametrize("params", [["a"], "x", {"order_no": {"nested": 1}}, {"order_no": [1]}])
def test_bad_params_are_400(api, params: object) -> None:
    url = _template(api)
    response = api.post(url, {"params": params})
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert "params" in response.json()["errors"]


def test_email_preview_escapes_params_in_html_but_not_the_authored_markup(api) -> None:
    url = _template(api, channel="email", title="Hi {{name}}", content="<p>Dear {{name}}</p>")
    body = api.post(url, {"params": {"name": "<script>alert(1)</script>"}}).json()
    assert body["html"] == "<p>Dear &lt;script&gt;alert(1)&lt;/script&gt;</p>"
    assert body["title"] == "Hi <script>alert(1)</script>"
    assert "segments" not in body
    assert "encoding" not in body


@pytest.mark.parametrize("channel", ["wechat", "wecom", "push", "inbox"])
def test_non_sms_preview_has_no_segments(api, channel: str) -> None:
    url = _template(api, channel=channel)
    assert api.post(url, {"params": {"order_no": "1"}}).json() == {"content": "Order 1 shipped"}


def test_disabled_template_can_still_be_previewed(api) -> None:
    url = _template(api)
    api.patch("/api/v1/templates/t", {"status": "disabled"})
    assert api.post(url, {"params": {"order_no": "1"}}).status_code == 200
