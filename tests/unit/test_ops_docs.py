"""The dashboard and the alert rules in docs/ops name only metrics the server exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from authz.server.observability import Metrics

OPS = Path(__file__).resolve().parents[2] / "docs" / "ops"
METRIC = re.compile(r"\b((?:grpc_server|authz)_[a-z_]+)\b")


def exported_names() -> set[str]:
    registry = CollectorRegistry()
    Metrics(registry)
    names = set()
    for family in registry.collect():
        names |= {family.name, *(family.name + suffix for suffix in ("_total", "_bucket", "_count", "_sum"))}
    return names


def test_alert_rules_name_real_metrics_and_cover_what_the_issue_lists() -> None:
    rules = yaml.safe_load((OPS / "alerts.yml").read_text())
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    known = exported_names()
    for name, rule in alerts.items():
        used = set(METRIC.findall(rule["expr"]))
        assert used and used <= known, (name, used - known)
        assert rule["labels"]["severity"] and rule["annotations"]["summary"], name
    # Error ratio, latency, lag, outbox stuck, reload refused.
    assert {
        "AuthzServerErrors",
        "AuthzCheckLatency",
        "AuthzEngineLag",
        "AuthzOutboxStuck",
        "AuthzPolicyReloadRefused",
    } <= set(alerts)


def test_dashboard_panels_query_real_metrics() -> None:
    dashboard = json.loads((OPS / "grafana-dashboard.json").read_text())
    known = exported_names()
    queried: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            used = set(METRIC.findall(target["expr"]))
            assert used and used <= known, (panel["title"], used - known)
            queried |= used
    # Every family shows somewhere on the dashboard.
    families = {name.removesuffix("_total") for name in known if not name.endswith(("_bucket", "_count", "_sum"))}
    shown = {name.removesuffix("_total").removesuffix("_bucket") for name in queried}
    assert families <= shown | {f + "_total" for f in shown}, families - shown
