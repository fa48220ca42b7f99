"""One test run: its id, its private directory, and a ledger of what it started.

Every process, directory and network bridge the harness creates is written in
the run's ledger; at the end of the session :meth:`Run.leftovers` lists any
that are still there, and the harness fails loudly if the list is not empty.
(Containers and databases are checked by their own fixtures, while their
servers still run.)

Runs from crashed sessions (the test process was killed, so no teardown ran)
are reaped when the next run creates its directory: a run directory whose
owner process is gone has its processes killed, its mounts and bridge removed
and itself deleted. Live runs of other sessions on the same machine are left
alone, so several people can run the suite at once.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import secrets
import shutil
import subprocess
import tempfile

import psutil

# Containers the tests create carry {TEST_LABEL: run id}; the agent labels its
# workspaces with WORKSPACE_LABEL. Both are removed at the end of the run.
TEST_LABEL = "a4c.test-run"
WORKSPACE_LABEL = "a4c.workspace"
# Images the tests build are tagged with this prefix and removed at the end.
TEST_IMAGE_PREFIX = "a4c-test"

RUN_DIR_PREFIX = "a4c-test-"
_OWNER_FILE = "owner"
_BRIDGE_FILE = "bridge"
_PIDS_FILE = "pids"


@dataclasses.dataclass
class _Tracked:
    name: str
    process: subprocess.Popen


class Run:
    def __init__(self, run_id: str | None = None, base: pathlib.Path | None = None) -> None:
        self.id = run_id or secrets.token_hex(4)
        self._base = base or pathlib.Path(tempfile.gettempdir())
        self._root: pathlib.Path | None = None
        self._processes: list[_Tracked] = []
        self.bridges: list[str] = []

    @property
    def root(self) -> pathlib.Path:
        """The run's private directory (short, so unix socket paths inside it stay under 108 bytes)."""
        if self._root is None:
            reap_stale_runs(self._base)
            root = self._base / f"{RUN_DIR_PREFIX}{self.id}"
            root.mkdir()
            root.chmod(0o755)  # whatever the umask: the embedded PostgreSQL runs as another user
            (root / _OWNER_FILE).write_text(_stamp(os.getpid()))
            self._root = root
        return self._root

    def subdir(self, name: str) -> pathlib.Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def track(self, name: str, process: subprocess.Popen) -> subprocess.Popen:
        """A process the run started; written down so a reaper can kill it after a crash."""
        self._processes.append(_Tracked(name, process))
        try:
            stamp = _stamp(process.pid)
        except psutil.Error:
            return process  # already gone
        with open(self.root / _PIDS_FILE, "a") as f:
            f.write(stamp + "\n")
        return process

    def record_bridge(self, name: str) -> None:
        """A bridge the run created; written down so a reaper can delete it after a crash."""
        self.bridges.append(name)
        with open(self.root / _BRIDGE_FILE, "a") as f:
            f.write(name + "\n")

    def close(self) -> None:
        """Remove the run directory; components must have stopped their processes first."""
        if self._root is not None and self._root.exists():
            _unmount_under(self._root)
            shutil.rmtree(self._root, ignore_errors=True)

    def leftovers(self) -> list[str]:
        found = [f"process {t.name} (pid {t.process.pid}) still running" for t in self._processes if t.process.poll() is None]
        if self._root is not None:
            found += [f"process {p.pid} still running: {_describe(p)}" for p in _processes_mentioning(self._root)]
            if self._root.exists():
                found.append(f"run directory {self._root} still exists")
        found += [f"bridge {name} still exists" for name in self.bridges if _bridge_exists(name)]
        return found


def _stamp(pid: int) -> str:
    """A process identity that survives pid reuse: pid plus its start time."""
    return f"{pid} {_started(pid)}"


def _stamp_alive(stamp: str) -> bool:
    try:
        pid_text, started = stamp.split()
        return _started(int(pid_text)) == started
    except (ValueError, OSError):
        return False


def _started(pid: int) -> str:
    """When ``pid`` started, in clock ticks since boot (``starttime`` in /proc/<pid>/stat).

    Not psutil's create_time: that adds the boot time as the wall clock puts it
    now, so a clock step (NTP on a VM) made a live worker's stamp look dead, and
    another worker reaped its run directory mid-run.
    """
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[19]  # field 22; the fields after the name start at field 3


def _describe(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())[:200]
    except psutil.Error:
        return "(exited meanwhile)"


def _recorded_processes(root: pathlib.Path) -> list[psutil.Process]:
    try:
        stamps = (root / _PIDS_FILE).read_text().splitlines()
    except OSError:
        return []
    alive = []
    for stamp in stamps:
        if _stamp_alive(stamp):
            try:
                alive.append(psutil.Process(int(stamp.split()[0])))
            except psutil.Error:
                pass
    return alive


def _processes_mentioning(path: pathlib.Path) -> list[psutil.Process]:
    needle = str(path)
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.pid != os.getpid() and any(needle in arg for arg in proc.info["cmdline"] or ()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _mounts_under(path: pathlib.Path) -> list[str]:
    prefix = str(path) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].replace("\\040", " ") for line in f]
    return [p for p in points if p.startswith(prefix)]


def _unmount_under(path: pathlib.Path) -> None:
    # Deepest first; lazily, so a busy mount cannot stop the cleanup.
    for point in sorted(_mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _bridge_exists(name: str) -> bool:
    return pathlib.Path("/sys/class/net", name).exists()


def delete_bridge(name: str) -> None:
    if _bridge_exists(name):
        subprocess.run(["ip", "link", "delete", name], capture_output=True)


def reap_stale_runs(base: pathlib.Path) -> list[pathlib.Path]:
    """Clean up after runs whose test process died without tearing down; returns the directories reaped."""
    reaped = []
    for root in base.glob(f"{RUN_DIR_PREFIX}*"):
        try:
            stamp = (root / _OWNER_FILE).read_text()
        except OSError:
            continue  # being created right now, or not one of ours
        if _stamp_alive(stamp):
            continue
        doomed = _recorded_processes(root) + _processes_mentioning(root)
        for proc in doomed:
            try:
                proc.kill()
            except psutil.Error:
                pass
        # Wait for every process killed, recorded ones too: SIGKILL is delivered
        # asynchronously, and a caller may check right after (as the ledger test does).
        psutil.wait_procs(doomed, timeout=10)
        try:
            for name in (root / _BRIDGE_FILE).read_text().split():
                delete_bridge(name)
        except OSError:
            pass
        _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)
        reaped.append(root)
    return reaped
