"""The API server's audit log, kept for requests made by service accounts, so
a test can prove what an identity (the chart's operator account) was allowed
and what it actually used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        # kube-controller-manager's own controllers use kube-system accounts.
        {"level": "None", "userGroups": ["system:serviceaccounts:kube-system"]},
        {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
        {"level": "None"},
    ],
}


def write_audit_policy(path: Path) -> Path:
    path.write_text(yaml.safe_dump(POLICY))
    return path


def read_audit_events(log: Path, username: str) -> list[dict[str, Any]]:
    """Audit events of one user, e.g. system:serviceaccount:ns:name. A watch is
    logged at ResponseStarted (and at ResponseComplete only when it ends)."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        ev = json.loads(line)
        stage_ok = ev.get("stage") in ("ResponseStarted", "ResponseComplete")
        if stage_ok and ev.get("user", {}).get("username") == username:
            out.append(ev)
    return out
