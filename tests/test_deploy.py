"""The deploy files parse and agree with the CLI and the health endpoints."""

from __future__ import annotations

from pathlib import Path

import yaml

DEPLOY = Path(__file__).parents[1] / "deploy"


def test_kubernetes_manifests_parse_and_probe_real_endpoints() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "microcred.yaml").read_text()))
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ConfigMap", "Deployment", "Deployment", "Job", "Service"]
    web = next(d for d in docs if d["metadata"]["name"] == "microcred-web")
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"] for e in container["env"]}
    assert {"MICROCRED_DATABASE_URL", "MICROCRED_SECRET_KEY"} <= env


def test_compose_runs_migrate_before_web_and_worker() -> None:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = doc["services"]
    assert services["migrate"]["command"] == ["microcred", "migrate"]
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    assert "postgresql+psycopg://" in services["web"]["environment"]["MICROCRED_DATABASE_URL"]
