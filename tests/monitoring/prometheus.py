"""The shipped monitoring files, and a real Prometheus (Debian's ``prometheus`` package) to run them.

:class:`Prometheus` runs the ``prometheus`` binary on a free loopback port
with its storage in a temporary directory; the tests load the config and
rules of ``monitoring/`` into it, with only the intervals and ``for:``
durations shortened (:func:`fast_rules`), so the expressions under test are
the shipped ones.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import typing
import urllib.parse
import urllib.request

import yaml

from tests.harness import ports, processes, wait

ROOT = pathlib.Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
CONFIG = MONITORING / "prometheus" / "prometheus.yml"
RULES = MONITORING / "prometheus" / "rules" / "a4c.rules.yml"
RULE_TESTS = MONITORING / "prometheus" / "rules" / "a4c.rules.test.yml"
TARGETS_PLAYBOOK = MONITORING / "ansible" / "prometheus-targets.yml"
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))
ANSIBLE_PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} not found: install Debian's prometheus package (`make deps` does, it is in APT_PACKAGES)")
    return found


def alerts() -> dict[str, dict[str, typing.Any]]:
    """Every alerting rule of the shipped rules file, by name."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def fast_rules(path: pathlib.Path, pending: str = "1s") -> pathlib.Path:
    """The shipped rules with every ``for:`` cut to ``pending`` (expressions untouched)."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = pending
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def config_for(workdir: pathlib.Path, targets_dir: pathlib.Path, token_file: pathlib.Path, rules: pathlib.Path, interval: str = "1s") -> pathlib.Path:
    """The shipped prometheus.yml with short intervals and this run's paths (jobs, auth and file_sd unchanged)."""
    doc = yaml.safe_load(CONFIG.read_text())
    doc["global"] = {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval}
    doc["rule_files"] = [str(rules)]
    for job in doc["scrape_configs"]:
        auth = job.get("authorization")
        if auth and "credentials_file" in auth:
            auth["credentials_file"] = str(token_file)
        for sd in job.get("file_sd_configs", []):
            sd["files"] = [str(targets_dir / pathlib.Path(f).name) for f in sd["files"]]
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def write_targets(inventory: dict[str, typing.Any], workdir: pathlib.Path) -> pathlib.Path:
    """Run the shipped file_sd playbook on ``inventory``; returns the directory of the target files."""
    inventory_path = workdir / "inventory.yml"
    inventory_path.write_text(yaml.safe_dump(inventory))
    targets = workdir / "targets"
    done = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(inventory_path), str(TARGETS_PLAYBOOK), "-e", f"a4c_prometheus_targets_dir={targets}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=workdir,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return targets


class Prometheus:
    """``prometheus`` on a free loopback port with its own storage; stopped by :meth:`stop`."""

    def __init__(self, workdir: pathlib.Path, config: pathlib.Path) -> None:
        self.workdir = workdir
        self.config = config
        self.port = ports.free_port()
        self.log = workdir / "prometheus.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> Prometheus:
        self.process = processes.spawn(
            [
                binary("prometheus"),
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            self.log,
        )
        wait.wait_until(self._ready, timeout=timeout, message=f"prometheus ready at {self.url}\n{processes.log_tail(self.log)}")
        return self

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.process.returncode}:\n{processes.log_tail(self.log)}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.process, grace=15)

    def api(self, path: str, **params: typing.Any) -> typing.Any:
        """GET /api/v1/<path>: the ``data`` of a successful answer, else AssertionError with Prometheus' error."""
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def targets(self) -> list[dict[str, typing.Any]]:
        return self.api("targets", state="active")["activeTargets"]

    def firing(self) -> list[dict[str, str]]:
        """Labels of every firing alert."""
        return [a["labels"] for a in self.api("alerts")["alerts"] if a["state"] == "firing"]


# -- Grafana dashboards -----------------------------------------------------------------

# What Grafana puts in for its built-in variables, and for ours set to "All".
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m", "$instance": ".*", "${instance}": ".*"}


def dashboard_queries(path: pathlib.Path) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable of a dashboard, variables substituted."""
    board = json.loads(path.read_text())
    out: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, typing.Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                out.append((f"{path.name}: {panel['title']} [{target.get('refId')}]", substitute(target["expr"])))
            walk(panel.get("panels", []))

    walk(board.get("panels", []))
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        # label_values(<expr>, <label>) is Grafana's, not PromQL: run its selector.
        match = re.fullmatch(r"label_values\((.*),\s*\w+\)", query.strip())
        out.append((f"{path.name}: variable {variable['name']}", substitute(match.group(1) if match else query)))
    return out


def substitute(expr: str) -> str:
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    assert "$" not in expr, f"a variable left unsubstituted in {expr!r}"
    return expr


def metric_names(expr: str) -> set[str]:
    """The a4c_* metric names an expression reads (histogram series mapped to their family)."""
    names = set(re.findall(r"\ba4c_[a-z0-9_]+", expr))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}
