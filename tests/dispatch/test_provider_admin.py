"""Operators add and route providers in admin: settings checked and stored encrypted, destinations
(calling codes) checked and written one way."""

from __future__ import annotations

import json

import pytest

from apps.dispatch.models import Provider
from devstack.simulator.state import DEFAULT_CREDENTIALS

pytestmark = pytest.mark.django_db


def _form(**fields: object) -> dict[str, object]:
    settings = {**DEFAULT_CREDENTIALS["aliyun"], "sign_name": "MC", "endpoint": "http://127.0.0.1:9"}
    return {
        "name": "cn-aliyun",
        "channel": "sms",
        "kind": "aliyun",
        "weight": 100,
        "priority_group": 1,
        "enabled": "on",
        "rate_limit": 0,
        "destinations": "",
        "settings_json": json.dumps(settings),
        **fields,
    }


def test_destinations_are_saved_as_calling_codes_and_route_by_number(operator) -> None:
    response = operator.post("/admin/dispatch/provider/add/", _form(destinations=" +86;+852 ,"))
    assert response.status_code == 302, response.content.decode()[:2000]
    provider = Provider.objects.get(name="cn-aliyun")
    assert provider.destinations == "+86, +852"
    assert provider.serves("+8613800000000") and provider.serves("+85291234567")
    assert not provider.serves("+14155550100")
    assert b"+86, +852" in operator.get("/admin/dispatch/provider/").content


@pytest.mark.parametrize("destinations", ["86", "+86x", "+0", "china"])
def test_a_destination_that_is_not_a_calling_code_is_refused(operator, destinations: str) -> None:
    response = operator.post("/admin/dispatch/provider/add/", _form(destinations=destinations))
    assert response.status_code == 200
    assert b"Not a calling code like +86" in response.content
    assert not Provider.objects.exists()


def test_without_destinations_a_provider_serves_every_number(operator) -> None:
    assert operator.post("/admin/dispatch/provider/add/", _form()).status_code == 302
    provider = Provider.objects.get()
    assert provider.serves("+14155550100") and provider.serves("+8613800000000")
