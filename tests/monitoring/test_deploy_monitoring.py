"""The Grafana dashboard and the Prometheus alert rules shipped in deploy/: well-formed, checked by
promtool where it is installed (Debian's `prometheus` package; `make check-monitoring` installs it),
and every metric they use is on /metrics from the start."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from apps.dispatch.models import Provider

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "messaging-center.json"
METRIC = re.compile(r"\b(mc_[a-z0-9_]+)")
PROMTOOL = shutil.which("promtool")


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def _panel_exprs() -> list[str]:
    return [target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]


def test_alert_rules_are_complete() -> None:
    rules = _rules()
    assert len({rule["alert"] for rule in rules}) == len(rules) >= 10
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"] and METRIC.search(rule["expr"]), rule["alert"]


def test_the_grafana_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "messaging-center" and dashboard["templating"]["list"][0]["type"] == "datasource"
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels) >= 10
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian package `prometheus`: make check-monitoring)")
def test_promtool_accepts_the_rules_and_the_dashboards_queries(tmp_path: Path) -> None:
    checked = subprocess.run([str(PROMTOOL), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The dashboard's queries, as recording rules: promtool parses each one.
    recorded = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(_panel_exprs())]}
        ]
    }
    queries = tmp_path / "dashboard-queries.yml"
    queries.write_text(yaml.safe_dump(recorded))
    checked = subprocess.run([str(PROMTOOL), "check", "rules", str(queries)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.django_db
def test_every_metric_the_rules_and_the_dashboard_use_is_on_metrics_from_the_start() -> None:
    Provider.objects.create(name="test-aliyun", kind="aliyun", channel="sms")  # a provider that has made no call yet
    client = Client()
    client.get("/healthz")  # request latency is per route and status: a series once a request was served
    exposed = {
        sample.name
        for family in text_string_to_metric_families(client.get("/metrics").content.decode())
        for sample in family.samples
    }
    used = {name for text in [rule["expr"] for rule in _rules()] + _panel_exprs() for name in METRIC.findall(text)}
    assert used and not used - exposed, sorted(used - exposed)
