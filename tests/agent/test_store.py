"""The agent's on-disk state survives restarts and stays bounded."""

from __future__ import annotations

import pathlib
import stat
import time

from agent import store


def test_executed_command_ids_survive_a_restart(tmp_path: pathlib.Path) -> None:
    seen = store.SeenCommands(str(tmp_path), replay_window=3600, max_entries=100)
    seen.add("cmd-1", time.time())
    again = store.SeenCommands(str(tmp_path), replay_window=3600, max_entries=100)
    assert "cmd-1" in again and "cmd-2" not in again
    assert len(again) == 1


def test_the_seen_set_forgets_ids_older_than_the_replay_window_and_stays_bounded(tmp_path: pathlib.Path) -> None:
    now = time.time()
    seen = store.SeenCommands(str(tmp_path), replay_window=60, max_entries=3)
    seen.add("expired", now - 120)
    for i in range(5):
        seen.add(f"fresh-{i}", now - i)
    assert len(seen) <= 3 and "fresh-0" in seen and "expired" not in seen
    lines = (tmp_path / "seen-commands.log").read_text().splitlines()
    assert len(lines) <= 2 * 3, "the log is compacted"


def test_a_torn_last_line_after_a_crash_is_skipped(tmp_path: pathlib.Path) -> None:
    (tmp_path / "seen-commands.log").write_text(f"good {time.time()!r}\nhalf-writ")
    seen = store.SeenCommands(str(tmp_path), replay_window=3600, max_entries=10)
    assert "good" in seen and len(seen) == 1


def test_workspace_marks_and_image_use_survive_a_restart(tmp_path: pathlib.Path) -> None:
    marks = store.WorkspaceMarks(str(tmp_path))
    marks.mark_stopped("ws-1", True)
    marks.mark_stopped("ws-2", True)
    marks.mark_stopped("ws-2", False)
    marks.image_used("sha256:a", 100.0)
    marks.image_used("sha256:b", 200.0)
    marks.forget_images(["sha256:b"])
    again = store.WorkspaceMarks(str(tmp_path))
    assert again.stopped == {"ws-1"}
    assert again.image_last_used == {"sha256:b": 200.0}
    assert stat.S_IMODE((tmp_path / "workspaces.json").stat().st_mode) == 0o600


def test_an_unreadable_marks_file_starts_empty_instead_of_failing(tmp_path: pathlib.Path) -> None:
    (tmp_path / "workspaces.json").write_text("{not json")
    assert store.WorkspaceMarks(str(tmp_path)).stopped == set()


def test_event_versions_keep_rising_across_a_restart_with_the_clock_set_back(tmp_path, monkeypatch):
    from shared import clock

    first = store.EventVersions(str(tmp_path))
    issued = [first.next() for _ in range(3)]
    assert issued == sorted(set(issued))
    # A restart (a new instance, as after kill -9) whose clock is 240 s behind.
    monkeypatch.setattr(clock, "OFFSET", -240.0)
    again = store.EventVersions(str(tmp_path))
    assert again.next() > issued[-1], "the control plane would drop every event as older until the clock caught up"
