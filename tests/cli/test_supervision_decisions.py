"""How ``a4c up`` treats a crashed child (a4c/supervise.py): the pure policy, table-tested, and the watch loop
on real short-lived processes."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from a4c import embedded, supervise
from tests.harness import wait

POLICY = supervise.Policy(first_delay=0.5, max_delay=30.0, give_up_after=5, within=120.0)


@pytest.mark.parametrize(
    ("exits", "now", "expected"),
    [
        pytest.param([100.0], 100.0, supervise.Restart(0.5), id="first crash: half a second"),
        pytest.param([90.0, 100.0], 100.0, supervise.Restart(1.0), id="second recent crash: doubled"),
        pytest.param([80.0, 90.0, 95.0, 100.0], 100.0, supervise.Restart(4.0), id="fourth recent crash: 4 s"),
        pytest.param([60.0, 70.0, 80.0, 90.0, 100.0], 100.0, supervise.GiveUp(5, 120.0), id="fifth within 2 minutes: give up"),
        pytest.param([0.0, 10.0, 20.0, 30.0, 200.0], 200.0, supervise.Restart(0.5), id="old crashes are forgiven"),
        pytest.param([0.0, 1.0, 2.0, 30.0, 125.0], 125.0, supervise.Restart(1.0), id="only those within the window count"),
        pytest.param([0.0, 121.0, 242.0, 363.0, 484.0, 605.0], 605.0, supervise.Restart(0.5), id="a crash every 2 minutes runs forever"),
    ],
)
def test_the_policy_restarts_with_a_doubling_delay_and_gives_up_on_the_fifth_crash_within_two_minutes(exits, now, expected):
    assert supervise.decide(exits, now, POLICY) == expected


def test_the_delay_is_capped():
    generous = supervise.Policy(first_delay=0.5, max_delay=30.0, give_up_after=100, within=1000.0)
    delays = [supervise.decide([float(i) for i in range(n)], float(n - 1), generous).delay for n in range(1, 12)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0, 30.0]


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (-9, "exited with signal 9 (SIGKILL)"),
        (-15, "exited with signal 15 (SIGTERM)"),
        (1, "exited with code 1"),
        (0, "exited with code 0"),
        (None, "exited"),
    ],
)
def test_an_exit_is_described_as_people_say_it(code, said):
    assert supervise.describe_exit(code) == said


def test_a_killed_child_is_restarted_with_the_same_arguments_and_the_restart_is_logged(tmp_path, capsys):
    child = embedded.Child("sleeper", ["sleep", "300"], tmp_path).start()
    watcher = supervise.Watcher([child], tmp_path, supervise.Policy(first_delay=0.2))
    try:
        first = child.process.pid
        os.kill(first, signal.SIGKILL)
        child.process.wait(5)

        def restarted() -> bool:
            watcher.step(time.monotonic())
            return child.alive() and child.process.pid != first

        wait.wait_until(restarted, timeout=10, interval=0.05, message="the sleeper restarted")
        assert child.argv == ["sleep", "300"]
        line = "sleeper exited with signal 9 (SIGKILL); restarting in 0.2 s (restart 1)"
        assert line in capsys.readouterr().err
        assert line in (tmp_path / "logs" / "up.log").read_text()
        assert watcher.restarts() == {"sleeper": 1}
        status = json.loads((tmp_path / "run" / "children.json").read_text())
        assert status["sleeper"] == {"pid": child.process.pid, "restarts": 1, "last_exit": "exited with signal 9 (SIGKILL)"}
    finally:
        child.stop()


def test_a_child_that_keeps_crashing_makes_the_watcher_give_up_with_its_log(tmp_path):
    child = embedded.Child("broken", ["sh", "-c", "echo cannot start: bad config; exit 3"], tmp_path).start()
    watcher = supervise.Watcher([child], tmp_path, supervise.Policy(first_delay=0.01, give_up_after=3, within=60))
    with pytest.raises(supervise.GaveUp) as gave_up:
        watcher.run(lambda: False, interval=0.02)
    message = str(gave_up.value)
    assert message.startswith("broken exited with code 3: 3 crashes within 60 s; giving up and stopping everything"), message
    assert "cannot start: bad config" in message and str(child.log) in message
    assert watcher.restarts() == {"broken": 2}
