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
    _serves_httptools_behind_the_proxy(container["command"])


def _serves_httptools_behind_the_proxy(command: list[str]) -> None:
    """The web process behind the TLS proxy or ingress runs httptools (service/serving.py)."""
    from service.serving import PROTOCOLS

    assert command[:2] == ["microcred", "serve"]
    assert command[command.index("--http") + 1] == "httptools" in PROTOCOLS


def test_compose_runs_migrate_before_web_and_worker() -> None:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = doc["services"]
    assert services["migrate"]["command"] == ["microcred", "migrate"]
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    assert "postgresql+psycopg://" in services["web"]["environment"]["MICROCRED_DATABASE_URL"]
    _serves_httptools_behind_the_proxy(services["web"]["command"])


def _dockerfile_runs() -> list[str]:
    """The RUN instructions of deploy/Dockerfile, continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith("RUN ")]


def test_the_image_installs_its_dependencies_from_the_lock_only() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "COPY requirements/runtime.txt " in text
    installs = [run for run in _dockerfile_runs() if "pip install" in run]
    # First the lock with its hashes, then the project without resolving anything again:
    # an install that resolves dependencies would take whatever PyPI offers that day.
    assert len(installs) == 2, installs
    lock, project = installs
    assert "--require-hashes -r requirements/runtime.txt" in lock
    assert "--no-deps ." in project and " -r " not in project
    lock_at = text.index("--require-hashes -r requirements/runtime.txt")
    assert text.index("COPY requirements/runtime.txt ") < lock_at < text.index("--no-deps .")
    assert (Path(__file__).parents[1] / "requirements" / "runtime.txt").is_file()
