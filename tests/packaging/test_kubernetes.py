"""The Kubernetes manifests in deploy/kubernetes/ decode strictly and agree with the product.

Strictness comes from the published API types: deploy/kubernetes/validate
decodes every document into k8s.io/api (and the Prometheus Operator's)
structs with unknown fields and duplicate keys as errors, and checks names
and labels by the API server's rules. The checks here tie the manifests to
this checkout: the config is one the control plane accepts, every secret
file it names is mounted, probes and ports are the real ones.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import click
import pytest
import yaml

from controlplane import cli as cp_cli
from controlplane import settings as cp_settings
from controlplane.api.views import ops

ROOT = pathlib.Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
VALIDATOR = MANIFESTS / "validate"
SECRETS_MOUNT = "/run/secrets/a4c"

pytestmark = pytest.mark.timeout(900)  # the first build of the validator compiles k8s.io/api (1-2 min on 2 cores)


@pytest.fixture(scope="module")
def validator(tmp_path_factory) -> pathlib.Path:
    go = shutil.which("go")
    assert go, "the Go toolchain (go) is needed to build deploy/kubernetes/validate; it comes with this machine kind"
    binary = tmp_path_factory.mktemp("k8s") / "validate"
    built = subprocess.run([go, "build", "-o", str(binary), "."], cwd=VALIDATOR, capture_output=True, text=True, timeout=840)
    assert built.returncode == 0, built.stderr
    return binary


def _validate(validator: pathlib.Path, *files: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(validator), *map(str, files)], capture_output=True, text=True, timeout=60)


def _manifests() -> list[pathlib.Path]:
    return sorted(MANIFESTS.glob("*.yaml"))


def _docs() -> dict[tuple[str, str], dict]:
    found = {}
    for path in _manifests():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and "metadata" in doc:
                found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def test_every_manifest_decodes_strictly_into_the_kubernetes_types(validator: pathlib.Path) -> None:
    result = _validate(validator, *_manifests())
    assert result.returncode == 0, result.stdout + result.stderr
    valid = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("ok ")}
    assert valid == {str(p) for p in _manifests()}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (("replicas: 3", "replica: 3"), 'unknown field "replica"'),
        (("periodSeconds: 5", "periodSecond: 5"), "periodSecond"),
        (("memory: 512Mi", "memory: lots"), "quantities must match"),
        (("apiVersion: apps/v1", "apiVersion: apps/v2"), 'unknown apiVersion/kind "apps/v2/Deployment"'),
        (("  revisionHistoryLimit: 5", "  revisionHistoryLimit: 5\n  revisionHistoryLimit: 6"), "already set in map"),
        (
            (
                "app.kubernetes.io/component: api\n    app.kubernetes.io/part-of",
                "app.kubernetes.io/component: not valid!\n    app.kubernetes.io/part-of",
            ),
            "value",
        ),
    ],
    ids=["unknown-field", "misspelt-nested-field", "bad-quantity", "unknown-version", "duplicate-key", "bad-label"],
)
def test_the_validator_refuses_what_the_api_server_would(validator: pathlib.Path, tmp_path: pathlib.Path, change, named) -> None:
    old, new = change
    text = (MANIFESTS / "deployment.yaml").read_text()
    assert old in text
    broken = tmp_path / "deployment.yaml"
    broken.write_text(text.replace(old, new, 1))
    result = _validate(validator, broken)
    assert result.returncode == 1, result.stdout
    assert named in result.stdout, result.stdout


def test_the_kustomization_lists_every_manifest_but_the_job_and_the_example_secret() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    expected = {p.name for p in _manifests()} - {"kustomization.yaml", "migrate-job.yaml", "secret.example.yaml"}
    assert sorted(kustomization["resources"]) == sorted(expected)


def test_the_config_is_one_the_control_plane_accepts_and_its_secret_files_are_mounted(tmp_path: pathlib.Path) -> None:
    docs = _docs()
    config_text = docs[("ConfigMap", "a4c-controlplane")]["data"]["controlplane.yaml"]
    # The files the Secret mounts, as the example has them, so the loader can read what it names.
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for key, value in docs[("Secret", "a4c-controlplane")]["stringData"].items():
        (secrets / key).write_text(value)
    path = tmp_path / "controlplane.yaml"
    path.write_text(config_text.replace(SECRETS_MOUNT, str(secrets)))
    settings = cp_settings.load(str(path), environ={})  # the same model, and the same strictness, as /etc/a4c/controlplane.yaml
    assert settings.search.sync_in_process is False, "the sync worker has its own Deployment"
    named = {
        value for section in yaml.safe_load(config_text).values() for key, value in section.items() if key.endswith("_file") or key == "ssl_cafile"
    }
    secret_keys = set(docs[("Secret", "a4c-controlplane")]["stringData"])
    assert named and {pathlib.PurePosixPath(p).parent.as_posix() for p in named} == {SECRETS_MOUNT}
    assert {pathlib.PurePosixPath(p).name for p in named} <= secret_keys
    monitor = docs[("ServiceMonitor", "a4c-controlplane")]
    assert {e["authorization"]["credentials"]["key"] for e in monitor["spec"]["endpoints"]} <= secret_keys


def _pod(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]


@pytest.mark.parametrize(("kind", "name"), [("Deployment", "a4c-controlplane"), ("Deployment", "a4c-search-sync"), ("Job", "a4c-migrate-0-1-0")])
def test_every_pod_is_non_root_read_only_and_bounded(kind: str, name: str) -> None:
    doc = _docs()[(kind, name)]
    pod = _pod(doc)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/etc/a4c", SECRETS_MOUNT} <= mounts
    # The container runs a command the control plane has, with the mounted config.
    command, *rest = container["args"]
    assert command in cp_cli.main.commands and isinstance(cp_cli.main.commands[command], click.Command)
    assert rest == ["--config", "/etc/a4c/controlplane.yaml"]


def test_the_api_deployment_probes_the_real_endpoints_and_drains_before_it_is_killed() -> None:
    docs = _docs()
    api = docs[("Deployment", "a4c-controlplane")]
    (container,) = _pod(api)["containers"]
    config = yaml.safe_load(docs[("ConfigMap", "a4c-controlplane")]["data"]["controlplane.yaml"])
    assert [p["containerPort"] for p in container["ports"] if p["name"] == "http"] == [config["http"]["port"]]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    served = {(e.method, e.path, e.auth) for e in ops.routes.endpoints}
    assert {("GET", "/readyz", "public"), ("GET", "/healthz", "public")} <= served, "probes need no token"
    grace = _pod(api)["terminationGracePeriodSeconds"]
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert grace > pause + config["http"]["shutdown_timeout"], "SIGTERM's drain must finish before the kill"
    assert api["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = docs[("PodDisruptionBudget", "a4c-controlplane")]
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = docs[("Service", "a4c-controlplane")]
    assert service["spec"]["selector"].items() <= labels.items()


def test_the_sync_worker_serves_metrics_where_the_service_and_monitor_look() -> None:
    docs = _docs()
    sync = docs[("Deployment", "a4c-search-sync")]
    (container,) = _pod(sync)["containers"]
    (port,) = [p for p in container["ports"] if p["name"] == "metrics"]
    assert port["containerPort"] == cp_settings.SearchSettings().sync_metrics_port
    env = {e["name"]: e["value"] for e in container["env"]}
    # The override is one the settings loader reads (A4C_<SECTION>__<KEY>), not a name it ignores.
    overridden = cp_settings.load(None, environ={"A4C_SEARCH__SYNC_METRICS_HOST": env["A4C_SEARCH__SYNC_METRICS_HOST"]})
    assert overridden.search.sync_metrics_host == "0.0.0.0"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    service = docs[("Service", "a4c-search-sync")]
    assert service["spec"]["selector"].items() <= sync["spec"]["template"]["metadata"]["labels"].items()
    monitor = docs[("ServiceMonitor", "a4c-controlplane")]
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"http", "metrics"}
