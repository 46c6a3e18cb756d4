"""Writes docs/ops/grafana-dashboard.json: `python docs/ops/make_dashboard.py` from the repository root.

The dashboard is kept as code so that a panel is added by editing a few lines here; the
JSON is committed, ready to import in Grafana (Dashboards → Import), and
tests/unit/test_ops_docs.py checks that each query names metrics the server exports.
"""

import json
from pathlib import Path

DS = {"type": "prometheus", "uid": "${datasource}"}
SVC = 'grpc_service="authz.v1.AuthzService",job=~"$job"'
J = 'job=~"$job"'
panels = []
y = 0


def row(title):
    global y
    panels.append(
        {"type": "row", "title": title, "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []}
    )
    y += 1


def panel(title, targets, x, w=8, h=8, unit="short", kind="timeseries", description=""):
    panels.append(
        {
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DS,
            "gridPos": {"h": h, "w": w, "x": x, "y": y},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
            "targets": [
                {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(65 + i)}
                for i, (expr, legend) in enumerate(targets)
            ],
        }
    )


def next_line(h=8):
    global y
    y += h


row("gRPC")
panel(
    "Calls per second by method",
    [(f"sum by (grpc_method) (rate(grpc_server_handled_total{{{SVC}}}[$__rate_interval]))", "{{grpc_method}}")],
    0,
    unit="reqps",
)
panel(
    "Server-side error ratio",
    [
        (
            f'sum(rate(grpc_server_handled_total{{{SVC},grpc_code=~"UNKNOWN|INTERNAL|UNAVAILABLE|DEADLINE_EXCEEDED|DATA_LOSS|UNIMPLEMENTED"}}[$__rate_interval])) / sum(rate(grpc_server_handled_total{{{SVC}}}[$__rate_interval]))',
            "errors",
        )
    ],
    8,
    unit="percentunit",
    description="Failures of the service itself (alert AuthzServerErrors at 1%). Refusals of bad input, denials and throttling are answers.",
)
panel(
    "Answers other than OK, by code",
    [
        (
            f'sum by (grpc_method, grpc_code) (rate(grpc_server_handled_total{{{SVC},grpc_code!="OK"}}[$__rate_interval]))',
            "{{grpc_method}} {{grpc_code}}",
        )
    ],
    16,
    unit="reqps",
)
next_line()
panel(
    "CheckAccess and BatchCheckAccess latency (server side)",
    [
        (
            f'histogram_quantile({q}, sum by (grpc_method, le) (rate(grpc_server_handling_seconds_bucket{{{SVC},grpc_method=~"CheckAccess|BatchCheckAccess"}}[$__rate_interval])))',
            f"{{{{grpc_method}}}} p{int(q * 100)}",
        )
        for q in (0.5, 0.99)
    ],
    0,
    w=12,
    unit="s",
)
panel(
    "Write latency p99",
    [
        (
            f'histogram_quantile(0.99, sum by (grpc_method, le) (rate(grpc_server_handling_seconds_bucket{{{SVC},grpc_method=~"GrantRelation|RevokeRelation|IssueLinkCode|RedeemLinkCode|LinkLegacyAccess"}}[$__rate_interval])))',
            "{{grpc_method}}",
        )
    ],
    12,
    w=12,
    unit="s",
)
next_line()
row("Decisions and links")
panel(
    "Decisions per second by outcome",
    [(f"sum by (rpc, outcome) (rate(authz_decisions_total{{{J}}}[$__rate_interval]))", "{{rpc}} {{outcome}}")],
    0,
    w=12,
    unit="ops",
)
panel(
    "Link attempts by outcome",
    [(f"sum by (rpc, outcome) (rate(authz_link_attempts_total{{{J}}}[$__rate_interval]))", "{{rpc}} {{outcome}}")],
    12,
    w=12,
    unit="ops",
    description="throttled: refused by the per-account, per-contact or per-legacy-login limit (alert AuthzLinkGuessing).",
)
next_line()
row("Engine and policy")
panel(
    "Revisions",
    [(f"max(authz_store_revision{{{J}}})", "store"), (f"authz_engine_revision{{{J}}}", "engine {{instance}} {{pid}}")],
    0,
)
panel(
    "Engine lag behind the store",
    [(f"authz_engine_lag_revisions{{{J}}}", "{{instance}} {{pid}}")],
    8,
    description="Alert AuthzEngineLag when above 0 for 2 minutes.",
)
panel(
    "Policy edits",
    [
        (f"sum(increase(authz_policy_reloads_total{{{J}}}[$__rate_interval]))", "reloaded"),
        (f"sum(increase(authz_policy_reload_refusals_total{{{J}}}[$__rate_interval]))", "refused"),
        (f"min(authz_policy_valid_on_disk{{{J}}})", "valid on disk (1/0)"),
    ],
    16,
)
next_line()
panel(
    "Policy served, by hash",
    [(f"count by (policy_hash) (authz_policy_info{{{J}}} == 1)", "{{policy_hash}}")],
    0,
    w=24,
    h=5,
    kind="stat",
    description="More than one hash for long: instances serve different policies (alert AuthzPolicyDiverges).",
)
next_line(5)
panel(
    "Calls in flight",
    [
        (
            f"sum by (grpc_method) (grpc_server_started_total{{{SVC}}}) - sum by (grpc_method) (grpc_server_handled_total{{{SVC}}})",
            "{{grpc_method}}",
        )
    ],
    0,
    w=12,
    description="Started minus handled: calls the server is working on now (per scrape).",
)
panel(
    "Messages received and sent",
    [
        (
            f"sum by (grpc_method) (rate(grpc_server_msg_received_total{{{SVC}}}[$__rate_interval]))",
            "in {{grpc_method}}",
        ),
        (f"sum by (grpc_method) (rate(grpc_server_msg_sent_total{{{SVC}}}[$__rate_interval]))", "out {{grpc_method}}"),
    ],
    0,
    w=12,
    description="Stream messages per second, as go-grpc-prometheus counts them: one each way per unary call, one per Watch answer.",
)
panel(
    "Age of the policy served",
    [(f"time() - authz_policy_loaded_timestamp_seconds{{{J}}}", "{{instance}} {{pid}}")],
    12,
    w=12,
    unit="s",
)
next_line()
row("Mail outbox and store")
panel(
    "Outbox",
    [
        (f"max(authz_outbox_pending{{{J}}})", "waiting"),
        (f"max(authz_outbox_abandoned{{{J}}})", "given up"),
    ],
    0,
)
panel(
    "Oldest waiting email",
    [(f"max(authz_outbox_oldest_pending_seconds{{{J}}})", "age")],
    8,
    unit="s",
    description="Alert AuthzOutboxStuck above 5 minutes.",
)
panel(
    "Mail sent and failed",
    [
        (f"sum(rate(authz_outbox_sent_total{{{J}}}[$__rate_interval]))", "sent"),
        (f"sum(rate(authz_outbox_failures_total{{{J}}}[$__rate_interval]))", "failed attempts"),
    ],
    16,
    unit="ops",
)
next_line()
panel(
    "Store connection pool",
    [
        (f"sum by (instance, state) (authz_store_pool_connections{{{J}}})", "{{instance}} {{state}}"),
        (f"sum by (instance) (authz_store_pool_size{{{J}}})", "{{instance}} size"),
    ],
    0,
    w=24,
)
next_line()

dashboard = {
    "__inputs": [],
    "title": "authz",
    "uid": "authz-service",
    "description": "The authz service: gRPC calls, decisions, engine and policy, mail outbox, store pool. Metrics: README, 'Metrics'.",
    "tags": ["authz", "grpc"],
    "timezone": "browser",
    "schemaVersion": 39,
    "version": 1,
    "editable": True,
    "refresh": "30s",
    "time": {"from": "now-6h", "to": "now"},
    "templating": {
        "list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
            {
                "name": "job",
                "type": "query",
                "datasource": DS,
                "query": {"query": "label_values(grpc_server_started_total, job)", "refId": "job"},
                "definition": "label_values(grpc_server_started_total, job)",
                "includeAll": True,
                "multi": True,
                "current": {"text": "All", "value": "$__all"},
                "allValue": ".*",
                "refresh": 2,
            },
        ]
    },
    "panels": [dict(p, id=i + 1) for i, p in enumerate(panels)],
}
Path("docs/ops/grafana-dashboard.json").write_text(json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n")
print(f"{len(panels)} panels written to docs/ops/grafana-dashboard.json")
