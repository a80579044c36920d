#!/usr/bin/env python3
"""Parses every PromQL query of a Grafana dashboard with `promtool check
rules` (Grafana only shows a broken query when its panel is viewed): each
panel target and query variable becomes a recording rule of a temporary rules
file, with Grafana's variables replaced by values of their kind. Exit status
is promtool's; 2 when the dashboard holds no query.

    scripts/check_dashboard_queries.py ops/grafana/esync.json

Which metrics the queries may name is checked by sync/tests/ops_rules.rs.
"""
import json
import re
import subprocess
import sys
import tempfile

# $__rate_interval, $__range, ... are durations; the other variables are
# label-value regexes (multi-value variables with an "all" value)
DURATIONS = re.compile(r"\$\{?(__rate_interval|__interval|__range)\}?")
VARIABLES = re.compile(r"\$\{?\w+\}?")
# Grafana's label_values(metric, label) is not PromQL: check the metric part
LABEL_VALUES = re.compile(r"\s*label_values\((.*),\s*\w+\)\s*")


def queries(dashboard):
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            match = LABEL_VALUES.fullmatch(query or "")
            yield match.group(1) if match else query
    panels = list(dashboard.get("panels", []))
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            yield target["expr"]


def main(path):
    with open(path, encoding="utf-8") as file:
        dashboard = json.load(file)
    rules = [
        {"record": f"dashboard:query_{number}", "expr": VARIABLES.sub(".*", DURATIONS.sub("5m", expr))}
        for number, expr in enumerate(queries(dashboard))
    ]
    if not rules:
        print(f"{path}: no queries found", file=sys.stderr)
        return 2
    with tempfile.NamedTemporaryFile("w", suffix=".yml", encoding="utf-8") as rules_file:
        # JSON is YAML: promtool reads it as a rules file
        json.dump({"groups": [{"name": path, "rules": rules}]}, rules_file, indent=1)
        rules_file.flush()
        return subprocess.run(["promtool", "check", "rules", rules_file.name], check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
