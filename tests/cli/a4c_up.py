"""Running ``a4c up`` as a subprocess for the tests in this directory: start, wait until ready, Ctrl-C.

``Up.start()`` spawns ``a4c up`` (in a session of its own, as a shell would
put it in a process group of its own) and polls its output until it says
"Press Ctrl-C to stop."; it keeps what the output looked like just before
that line appeared, so a test can show that progress was printed *while*
starting, not only at the end. ``Up.ctrl_c()`` does what a terminal's Ctrl-C
does (SIGINT to the foreground process group), waits for the exit with a
deadline, and returns the exit code, the output of that run, and every
process that was below ``a4c up`` just before the signal and is still alive.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import typing

import psutil

from tests.harness import processes, wait

BIN = pathlib.Path(sys.executable).parent
READY = "Press Ctrl-C to stop."
STEP = re.compile(r"^  (.+?) … ok \(\d+\.\d s\)$", re.MULTILINE)  # one finished start-up stage


@contextlib.contextmanager
def private_home() -> typing.Iterator[pathlib.Path]:
    """A home for one ``a4c up``, removed afterwards.

    Not under pytest's tmp_path: its parents are 0700, and the embedded
    PostgreSQL runs as its own user (as root), which must reach its data.
    """
    path = pathlib.Path(tempfile.mkdtemp(prefix="a4c-up-test-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclasses.dataclass
class Stopped:
    code: int
    output: str  # what this run of a4c up printed (stdout and stderr), start to end
    below: list[str]  # the command lines of what ran below a4c up just before the signal
    left: list[str]  # those still alive afterwards, described


class Up:
    def __init__(self, home: pathlib.Path, port: int, env: typing.Mapping[str, str], *extra: str) -> None:
        self.home = home
        self.state = home / "state"
        self.port = port
        self.log = home / "up.log"
        self.env = {**os.environ, "XDG_CONFIG_HOME": str(home / "config"), **env}
        self.extra = extra
        self.process: subprocess.Popen | None = None
        self._offset = 0
        self.before_ready = ""  # the last output seen while still starting

    def argv(self) -> list[str]:
        return [str(BIN / "a4c"), "up", "--state-dir", str(self.state), "--port", str(self.port), *self.extra]

    def start(self, timeout: float = 120) -> str:
        """Start and wait until ready; returns what this start printed."""
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        self.before_ready = ""
        self.process = processes.spawn(self.argv(), self.log, env=self.env)
        wait.wait_until(self._ready, timeout=timeout, interval=0.1, message=f"a4c up ready\n{processes.log_tail(self.log)}")
        return self.output()

    def output(self) -> str:
        with open(self.log, "rb") as log:
            log.seek(self._offset)
            return log.read().decode(errors="replace")

    def _ready(self) -> bool:
        text = self.running_output()
        if READY in text:
            return True
        self.before_ready = text
        return False

    def running_output(self) -> str:
        """What it printed so far; an error if it has exited (it should be starting or up)."""
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"a4c up exited with {self.process.returncode}:\n{processes.log_tail(self.log)}")
        return self.output()

    def a4c(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(BIN / "a4c"), *args], capture_output=True, text=True, env=self.env, timeout=300)
        if check and done.returncode != 0:
            raise AssertionError(f"a4c {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def kill9(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def ctrl_c(self, deadline: float = 60) -> Stopped:
        assert self.process is not None and self.process.poll() is None, "a4c up is running"
        below = psutil.Process(self.process.pid).children(recursive=True)
        lines = [_cmdline(proc) for proc in below]
        os.killpg(self.process.pid, signal.SIGINT)
        code = self.process.wait(deadline)
        try:
            # a4c up waits for its children; their own children (PostgreSQL's backends, dockerd's
            # containerd) may take a moment longer to be reaped: a short, bounded while.
            wait.wait_until(lambda: not _still_alive(below), timeout=10, interval=0.1, message="children gone")
            left: list[str] = []
        except AssertionError:
            left = _still_alive(below)
        return Stopped(code, self.output(), lines, left)

    def stop(self) -> None:
        """Teardown: whatever state the test left it in, stop it (and its process group)."""
        if self.process is not None:
            processes.stop(self.process, grace=60, sig=signal.SIGINT)


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.NoSuchProcess:
        return f"{proc.pid} (gone)"


def _still_alive(procs: list[psutil.Process]) -> list[str]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{proc.pid} {' '.join(proc.cmdline())[:200]}")
        except psutil.NoSuchProcess:
            continue
    return alive
