"""The run ledger names what outlived the run, and the next run reaps what a crashed one left."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import psutil

from tests.harness import processes, run

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_final_check_names_a_process_still_running(tmp_path):
    ledger = run.Run(base=tmp_path)
    sleeper = ledger.track("sleeper", processes.spawn(["sleep", "60"], ledger.root / "sleep.log"))
    try:
        assert any("sleeper" in line for line in ledger.leftovers())
    finally:
        processes.stop(sleeper)
    ledger.close()

    assert ledger.leftovers() == []


def test_the_final_check_names_the_run_directory_if_it_remains(tmp_path):
    ledger = run.Run(base=tmp_path)
    root = ledger.root

    assert ledger.leftovers() == [f"run directory {root} still exists"]


def test_a_crashed_runs_processes_and_directory_are_reaped_by_the_next_run(tmp_path):
    # A "test process" that starts a server and dies without tearing it down.
    crashed = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import pathlib, sys; sys.path.insert(0, sys.argv[2]);"
                "from tests.harness import run, processes;"
                "r = run.Run(run_id='dead0001', base=pathlib.Path(sys.argv[1]));"
                "p = r.track('server', processes.spawn(['sleep', '120'], r.root / 'server.log'));"
                "print(p.pid)"
            ),
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = int(crashed.stdout)
    assert (tmp_path / "a4c-test-dead0001").is_dir()
    assert psutil.pid_exists(orphan)

    reaped = run.reap_stale_runs(tmp_path)

    assert reaped == [tmp_path / "a4c-test-dead0001"]
    assert not (tmp_path / "a4c-test-dead0001").exists()
    assert not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == psutil.STATUS_ZOMBIE


def test_a_live_runs_directory_is_left_alone(tmp_path):
    ledger = run.Run(base=tmp_path)
    root = ledger.root

    assert run.reap_stale_runs(tmp_path) == []
    assert root.is_dir()
    ledger.close()


def test_a_session_that_leaves_a_process_running_fails_loudly_at_its_end(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest('pytest_plugins = ["tests.harness.fixtures_run"]')
    pidfile = pytester.path / "pid.txt"
    pytester.makepyfile(
        test_leaky=f"""
from tests.harness import processes

def test_starts_a_server_and_forgets_it(harness_run):
    server = harness_run.track("forgotten", processes.spawn(["sleep", "60"], harness_run.root / "forgotten.log"))
    open({str(pidfile)!r}, "w").write(str(server.pid))
"""
    )

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")

    try:
        result.assert_outcomes(passed=1, errors=1)
        result.stdout.fnmatch_lines(["*the test harness left things behind:*", "*process forgotten (pid *) still running*"])
    finally:
        psutil.Process(int(pidfile.read_text())).kill()


def test_a_live_runs_directory_is_not_reaped_when_the_wall_clock_steps(tmp_path, monkeypatch):
    ledger = run.Run(base=tmp_path)
    root = ledger.root
    # What NTP stepping the clock does to the boot time the kernel reports (/proc/stat's btime).
    stepped = psutil.boot_time() + 300
    monkeypatch.setattr(psutil._pslinux, "boot_time", lambda: stepped)  # where psutil reads it
    assert run.reap_stale_runs(tmp_path) == []
    assert root.exists()
    ledger.close()
