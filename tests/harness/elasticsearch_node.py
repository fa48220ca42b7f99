"""A real Elasticsearch 8 node for the tests, built from Maven Central artifacts.

Elastic publishes the 8.x server jar and its ``transport-netty4`` module (HTTP
and transport) on Maven Central, but not the other modules of a distribution
nor x-pack. So the node runs with no x-pack at all (no security, ML, watcher
or GeoIP downloader: nothing to switch off) and three small classes from
``tests/harness/jvm/elasticsearch/`` stand in for the unpublished pieces it
needs:

* ``Launcher`` starts a ``Node`` in-process with its plugins from the classpath,
  as the published test framework's ``MockNode`` does (no bootstrap checks, no
  CLI, no entitlement agent); SIGTERM closes the node;
* ``A4cRootPlugin`` answers ``GET /`` and ``HEAD /`` (Elasticsearch's
  rest-root module) with the body the official clients expect;
* ``A4cAnalysisPlugin`` supplies the analysis-common factories the jobs
  index's analyzer uses (``pattern_replace``, ``whitespace``, ``length``,
  ``keyword_marker``, ``stemmer`` ...), built from the same Lucene classes.

Everything else (mappings, composable index templates, aliases, bulk with
external versions, search, aggregations, ``search_after``, scroll, point in
time, ``_count``, cluster health) is the unmodified server. Not there:
``_reindex``, ``_update_by_query`` and ``_delete_by_query`` (the reindex
module), painless scripts, data streams, ``mapper-extras`` field types.

:func:`fetch` runs Maven once into a cache folder and compiles the classes;
:class:`ElasticsearchNode` runs one node with its data under a given folder.
``python -m tests.harness.elasticsearch_node DIR`` starts one by hand.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time
import typing
import urllib.error
import urllib.request

from tests.harness import jvm, ports, processes

SOURCE = pathlib.Path(__file__).with_name("jvm") / "elasticsearch"
# The pom says which release; everything else follows it.
_VERSION = re.search(r"<elasticsearch.version>([^<]+)</elasticsearch.version>", (SOURCE / "pom.xml").read_text())
assert _VERSION is not None, f"{SOURCE / 'pom.xml'} names no elasticsearch.version"
VERSION = _VERSION.group(1)
DEFAULT_CACHE = jvm.CACHE / f"elasticsearch-{VERSION}"
MAIN_CLASS = "org.elasticsearch.node.Launcher"
_JAVA_SOURCES = ("Launcher.java", "ClasspathPluginsService.java", "A4cAnalysisPlugin.java", "A4cRootPlugin.java")
_STAMP = ".fetched"

# What Elasticsearch's own launcher passes (its system JVM options), less what
# only a distribution needs; the heap is small and fixed.
JVM_OPTIONS = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseSerialGC",  # a 512 MB heap on two cores: ~35 MB less RSS than G1, as fast a start
    "-XX:-OmitStackTraceInFastThrow",
    "-Dfile.encoding=UTF-8",
    "-Djava.locale.providers=SPI,CLDR",  # the server's IsoCalendarDataProvider: weeks start on Monday
    "-Dlog4j.shutdownHookEnabled=false",  # the node logs its own shutdown
    "-Dlog4j2.disable.jmx=true",
    "-Dio.netty.noUnsafe=true",
    "-Dio.netty.noKeySetOptimization=true",
    "-Dio.netty.recycler.maxCapacityPerThread=0",
)


class ElasticsearchNodeError(RuntimeError):
    """The node could not be fetched, started or stopped."""


def _digest() -> str:
    digest = hashlib.sha256(VERSION.encode())
    for path in sorted(SOURCE.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _javac(java: str) -> str:
    home = os.environ.get("JAVA_HOME")
    for candidate in (pathlib.Path(home, "bin", "javac") if home else None, pathlib.Path(java).resolve().with_name("javac")):
        if candidate is not None and candidate.exists():
            return str(candidate)
    found = shutil.which("javac")
    if found is None:
        raise jvm.JvmError("no javac: install Debian's openjdk-17-jdk-headless (the node's launcher is compiled at fetch time)")
    return found


def fetch(cache_dir: pathlib.Path | None = None) -> pathlib.Path:
    """The folder holding the node's jars (``lib/``) and compiled classes (``classes/``).

    The first call runs Maven (Maven Central, or ``~/.m2`` when it already
    holds the jars) and javac; later calls only compare a stamp, so they are
    instant and need no network. Safe to call from several processes at once.
    """
    target = pathlib.Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
    stamp = target / _STAMP
    digest = _digest()
    if stamp.exists() and stamp.read_text().split("\n", 1)[0] == digest:
        return target
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text().split("\n", 1)[0] == digest:
            return target
        java = jvm.java()
        javac = _javac(java)
        mvn = shutil.which("mvn")
        if mvn is None:
            raise jvm.JvmError("no mvn on the PATH: install Debian's maven (and openjdk-17-jre-headless for java)")
        stamp.unlink(missing_ok=True)
        lib, classes = target / "lib", target / "classes"
        for folder in (lib, classes):
            shutil.rmtree(folder, ignore_errors=True)
        argv = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(SOURCE / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={lib}",
        ]
        _run(argv, "fetching Elasticsearch's jars", timeout=900)
        argv = [
            javac,
            "-nowarn",
            "--release",
            "17",
            "-encoding",
            "UTF-8",
            "-cp",
            f"{lib}/*",
            "-d",
            str(classes),
            *(str(SOURCE / name) for name in _JAVA_SOURCES),
        ]
        _run(argv, "compiling the node's launcher", timeout=300)
        stamp.write_text(digest + "\n" + " ".join(sorted(p.name for p in lib.iterdir())) + "\n")
    return target


def _run(argv: list[str], what: str, *, timeout: float) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise jvm.JvmError(f"{what} failed ({' '.join(argv)}):\n{(done.stdout + done.stderr)[-3000:]}")


# The node is on the loopback interface: never through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


class ElasticsearchNode:
    """One single-node cluster on 127.0.0.1 with its home, data and logs under ``directory``.

    The HTTP and transport ports are chosen once, so a restart serves the same
    URL and the same data. ``settings`` adds or overrides node settings
    (``elasticsearch.yml`` keys), e.g. ``{"action.destructive_requires_name": False}``.
    ``track`` (e.g. ``Run.track``) is told of every JVM started, restarts included.
    """

    def __init__(
        self,
        directory: pathlib.Path,
        port: int | None = None,
        *,
        cache_dir: pathlib.Path | None = None,
        settings: typing.Mapping[str, typing.Any] | None = None,
        jvm_options: typing.Sequence[str] = JVM_OPTIONS,
        track: typing.Callable[[str, subprocess.Popen], object] | None = None,
    ) -> None:
        self.directory = pathlib.Path(directory).absolute()
        self.port = port or ports.free_port()
        self.transport_port = ports.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = self.directory / "data"
        self.log = self.directory / "node.log"
        self.info: dict[str, typing.Any] | None = None
        self._cache_dir = cache_dir
        self._settings = dict(settings or {})
        self._jvm_options = tuple(jvm_options)
        self._track = track
        self._process: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self.running else None

    @property
    def version(self) -> str | None:
        """``version.number`` of ``GET /`` (read at start), e.g. ``"8.19.0"``."""
        return self.info["version"]["number"] if self.info else None

    @property
    def flavor(self) -> str | None:
        """``version.build_flavor`` of ``GET /``: ``"default"``."""
        return self.info["version"]["build_flavor"] if self.info else None

    build_flavor = flavor

    def node_settings(self) -> dict[str, typing.Any]:
        settings: dict[str, typing.Any] = {
            "cluster.name": "a4c-test",
            "node.name": "a4c-test",
            "node.roles": ["master", "data", "ingest"],
            "path.data": str(self.data_dir),
            "path.logs": str(self.directory / "logs"),
            "network.host": "127.0.0.1",
            "http.port": self.port,
            "transport.port": self.transport_port,
            "discovery.type": "single-node",
            # The test machine's disk may be fuller than the 85 % low watermark.
            "cluster.routing.allocation.disk.threshold_enabled": False,
        }
        settings.update(self._settings)
        return settings

    def _prepare(self) -> list[str]:
        home = fetch(self._cache_dir)
        config = self.directory / "config"
        config.mkdir(parents=True, exist_ok=True)
        (self.directory / "tmp").mkdir(exist_ok=True)
        # JSON is YAML: no quoting rules of our own.
        (config / "elasticsearch.yml").write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in self.node_settings().items()))
        shutil.copyfile(SOURCE / "log4j2.properties", config / "log4j2.properties")
        return [
            jvm.java(),
            *self._jvm_options,
            f"-Djava.io.tmpdir={self.directory / 'tmp'}",
            f"-Da4c.parent.pid={os.getpid()}",  # the node stops when the process that started it dies
            "-cp",
            f"{home / 'lib'}/*{os.pathsep}{home / 'classes'}",
            MAIN_CLASS,
            str(self.directory),
        ]

    def start(self, timeout: float = 120.0) -> float:
        """Start (or restart) on the same ports and data and wait for a yellow cluster; returns the seconds it took."""
        if self.running:
            return 0.0
        argv = self._prepare()
        began = time.monotonic()
        try:
            self._process = processes.spawn(argv, self.log, cwd=self.directory)
            if self._track is not None:
                self._track("elasticsearch", self._process)
            health = f"{self.url}/_cluster/health?wait_for_status=yellow&timeout=1s"
            while True:
                status, _ = _get(health)
                if status == 200:
                    break
                if self._process.poll() is not None:
                    raise ElasticsearchNodeError(
                        f"Elasticsearch exited with {self._process.returncode}; its log ({self.log}):\n{processes.log_tail(self.log)}"
                    )
                if time.monotonic() - began > timeout:
                    raise ElasticsearchNodeError(
                        f"Elasticsearch did not report yellow on {self.url} within {timeout:g} s:\n{processes.log_tail(self.log)}"
                    )
                time.sleep(0.1)
            status, body = _get(self.url + "/")
            if status != 200:
                raise ElasticsearchNodeError(f"GET {self.url}/ answered {status}: {body[:500]!r}")
            self.info = json.loads(body)
        except BaseException:
            self.kill()
            raise
        return time.monotonic() - began

    def stop(self, *, lose_data: bool = False, grace: float = 30.0) -> None:
        """SIGTERM (the node closes its shards), then SIGKILL after ``grace`` s; ``lose_data`` also wipes the data."""
        if self._process is not None:
            processes.stop(self._process, grace=grace)
        if lose_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL, as a crash would; the data stays (the next start recovers it from the translog)."""
        if self._process is not None:
            processes.kill(self._process)

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> ElasticsearchNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: typing.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.elasticsearch_node", description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=pathlib.Path, help="home, data and logs of the node")
    parser.add_argument("--port", type=int, help="HTTP port on 127.0.0.1 (default: a free one)")
    options = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops the node as Ctrl-C does
    node = ElasticsearchNode(options.directory, options.port)
    began = time.monotonic()
    try:
        fetch()
        fetched = time.monotonic() - began
        took = node.start()
    except KeyboardInterrupt:
        node.stop()
        return 130
    print(
        f"{node.url}  Elasticsearch {node.version} ({node.flavor}), pid {node.pid}, "
        f"fetch {fetched:.1f} s, start {took:.1f} s, log {node.log}; Ctrl-C stops it",
        flush=True,
    )
    try:
        while node.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
