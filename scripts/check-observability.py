#!/usr/bin/env python3
"""Checks of the Grafana dashboard and the Prometheus alert tests.

    check-observability.py dashboard [--promtool PATH]
        deploy/grafana/doclink.json parses, panel ids are unique, every panel and
        query uses the ${DS_PROMETHEUS} input, panels fit the 24-column grid
        without overlapping, and every doclink metric is on some panel. With
        --promtool, every query is also parsed by promtool (as a recording rule,
        Grafana variables replaced).
    check-observability.py alerts
        every alert in deploy/prometheus/doclink-alerts.yml fires in at least one
        case of doclink-alerts.test.yml and is expected quiet in at least one.

Needs PyYAML for `alerts` (the lint venv has it).
"""
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "doclink.json"
RULES = ROOT / "deploy" / "prometheus" / "doclink-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "doclink-alerts.test.yml"
DS = "${DS_PROMETHEUS}"

METRICS = [
    "doclink_messages_received_total", "doclink_emails_sent_total", "doclink_events_rejected_total",
    "doclink_links_failed_total", "doclink_retries_total", "doclink_throttled_total",
    "doclink_duplicates_skipped_total", "doclink_possible_duplicates_total", "doclink_claims_lost_total",
    "doclink_log_lines_dropped_total", "doclink_delivery_events_total", "doclink_revocation_sync_failures_total",
    "doclink_in_flight", "doclink_account_blocked", "doclink_database_up", "doclink_send_rate",
    "doclink_queue_visible_messages", "doclink_revocation_last_sync_timestamp_seconds", "doclink_send_seconds_bucket",
    # CloudFront access logs (issue 21)
    "doclink_link_access_total", "doclink_link_access_after_revoke_total", "doclink_access_log_lines_total",
    "doclink_access_log_objects_total",
]


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def check_dashboard(promtool):
    errors = []
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    if not any(i.get("name") == "DS_PROMETHEUS" and i.get("pluginId") == "prometheus" for i in dash.get("__inputs", [])):
        errors.append("__inputs has no prometheus DS_PROMETHEUS")
    panels = list(all_panels(dash["panels"]))
    ids = [p.get("id") for p in panels]
    dupes = sorted({i for i in ids if ids.count(i) > 1 or i is None}, key=str)
    if dupes:
        errors.append(f"duplicate or missing panel ids: {dupes}")
    exprs = []
    cells = {}
    for p in panels:
        g = p.get("gridPos", {})
        if g.get("x", 0) + g.get("w", 0) > 24:
            errors.append(f"panel {p['id']} is wider than the grid")
        for x in range(g.get("x", 0), g.get("x", 0) + g.get("w", 0)):
            for y in range(g.get("y", 0), g.get("y", 0) + g.get("h", 0)):
                if (x, y) in cells:
                    errors.append(f"panels {cells[(x, y)]} and {p['id']} overlap")
                    break
                cells[(x, y)] = p["id"]
        if p["type"] == "row":
            continue
        if p.get("datasource", {}).get("uid") != DS:
            errors.append(f"panel {p['id']} does not use {DS}")
        if not p.get("targets"):
            errors.append(f"panel {p['id']} has no query")
        for t in p.get("targets", []):
            if t.get("datasource", {}).get("uid") != DS:
                errors.append(f"panel {p['id']} query {t.get('refId')} does not use {DS}")
            exprs.append((p["id"], t["refId"], t["expr"]))
    text = "\n".join(e for _, _, e in exprs)
    missing = [m for m in METRICS if not re.search(rf"\b{m}\b", text)]
    if missing:
        errors.append(f"metrics on no panel: {missing}")
    if promtool and not errors:
        rules = {"groups": [{"name": "dashboard", "rules": [
            {"record": f"dashboard:panel{pid}:{ref}", "expr": grafana_to_promql(e)} for pid, ref, e in exprs]}]}
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
            json.dump(rules, f)  # JSON is YAML
            f.flush()
            r = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
            if r.returncode != 0:
                errors.append("promtool rejects a query:\n" + r.stdout + r.stderr)
    for e in errors:
        print(f"dashboard: {e}")
    if not errors:
        print(f"dashboard: {DASHBOARD.relative_to(ROOT)}: {len(panels)} panels, ids unique, {len(exprs)} queries"
              + (" parsed by promtool" if promtool else ""))
    return 1 if errors else 0


def grafana_to_promql(expr):
    return (expr.replace("$__rate_interval", "5m").replace("$__range", "1h")
            .replace("$job", ".*").replace("$instance", ".*"))


def check_alerts():
    import yaml

    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    alerts = [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    fired, quiet = set(), set()
    for t in tests["tests"]:
        for case in t.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    errors = [f"{a} never fires in {RULE_TESTS.name}" for a in alerts if a not in fired]
    errors += [f"{a} has no quiet case in {RULE_TESTS.name}" for a in alerts if a not in quiet]
    for e in errors:
        print(f"alert-coverage: {e}")
    if not errors:
        print(f"alert-coverage: all {len(alerts)} alerts fire and stay quiet in at least one test case each")
    return 1 if errors else 0


def main(argv):
    if argv[:1] == ["dashboard"]:
        promtool = argv[argv.index("--promtool") + 1] if "--promtool" in argv else None
        return check_dashboard(promtool)
    if argv[:1] == ["alerts"]:
        return check_alerts()
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
