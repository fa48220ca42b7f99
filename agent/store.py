"""Small on-disk state in ``state_dir`` that must survive restarts (and kill -9).

* ``seen-commands.log``: ids of executed commands with their issue time, one
  per line, appended after each command's result is published. Replay
  protection reads it at start; it is compacted to the ids still inside the
  replay window when it grows past twice its bound.
* ``seq``: a bound above every event version issued so far (:class:`EventVersions`),
  so versions keep rising across a restart even when the clock went back.
* ``workspaces.json``: workspaces stopped on command (cleanup keeps their
  exited containers: the control plane still wants them), when each image
  was last used to create a container (least-recently-used image cleanup),
  and each workspace's host ports, chosen once (agent/domain/ports.py) and
  kept until the workspace is deleted.

Writes of the JSON file are atomic (write a temp file, fsync, rename).
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import time
import typing

from agent.domain import verification
from shared import messages

log = logging.getLogger(__name__)


class SeenCommands(typing.Container[str]):
    """The bounded, persistent set of executed command ids."""

    def __init__(self, state_dir: str, *, replay_window: float, max_entries: int) -> None:
        self.path = pathlib.Path(state_dir) / "seen-commands.log"
        self.replay_window = replay_window
        self.max_entries = max_entries
        self._ids: dict[str, float] = {}
        self._lines = 0
        self._load()

    def __contains__(self, command_id: object) -> bool:
        return command_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, command_id: str, issued_at: float) -> None:
        self._ids[command_id] = issued_at
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(f"{command_id} {issued_at!r}\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._lines += 1
        if self._lines > 2 * self.max_entries or len(self._ids) > self.max_entries:
            self.compact()

    def compact(self) -> None:
        self._ids = verification.prune_seen(self._ids, now=time.time(), replay_window=self.replay_window, max_entries=self.max_entries)
        text = "".join(f"{cid} {issued!r}\n" for cid, issued in self._ids.items())
        _atomic_write(self.path, text)
        self._lines = len(self._ids)

    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        for line in text.splitlines():
            cid, _, issued = line.partition(" ")
            try:
                self._ids[cid] = float(issued)
            except ValueError:
                # A torn last line after a crash: that command runs again,
                # which is safe because every command is idempotent.
                continue
        self._lines = len(text.splitlines())
        self.compact()


class WorkspaceMarks:
    """Workspaces stopped on command, images' last use, workspaces' host ports; persisted as one JSON file."""

    def __init__(self, state_dir: str) -> None:
        self.path = pathlib.Path(state_dir) / "workspaces.json"
        self.stopped: set[str] = set()
        self.image_last_used: dict[str, float] = {}
        self.ports: dict[str, dict[str, int]] = {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.stopped = set(data.get("stopped", []))
            self.image_last_used = {str(k): float(v) for k, v in data.get("image_last_used", {}).items()}
            self.ports = {str(ws): {str(k): int(v) for k, v in got.items()} for ws, got in data.get("ports", {}).items()}
        except FileNotFoundError:
            pass
        except (ValueError, AttributeError, TypeError):
            log.warning("workspaces.json is unreadable; starting with no marks", extra={"path": str(self.path)})

    def mark_stopped(self, workspace_id: str, stopped: bool) -> None:
        before = workspace_id in self.stopped
        if stopped:
            self.stopped.add(workspace_id)
        else:
            self.stopped.discard(workspace_id)
        if before != stopped:
            self._save()

    def image_used(self, image_id: str, when: float) -> None:
        self.image_last_used[image_id] = when
        self._save()

    def forget_images(self, keep: typing.Iterable[str]) -> None:
        keep_set = set(keep)
        if set(self.image_last_used) - keep_set:
            self.image_last_used = {k: v for k, v in self.image_last_used.items() if k in keep_set}
            self._save()

    def ports_of(self, workspace_id: str) -> dict[str, int]:
        """Host ports recorded for a workspace, by container port key (``22/tcp``)."""
        return dict(self.ports.get(workspace_id, {}))

    def ports_of_others(self, workspace_id: str) -> set[int]:
        return {p for ws, got in self.ports.items() if ws != workspace_id for p in got.values()}

    def record_ports(self, workspace_id: str, chosen: typing.Mapping[str, int]) -> None:
        if chosen and self.ports.get(workspace_id) != dict(chosen):
            self.ports[workspace_id] = dict(chosen)
            self._save()

    def forget_ports(self, workspace_id: str) -> None:
        if self.ports.pop(workspace_id, None) is not None:
            self._save()

    def _save(self) -> None:
        data = {"stopped": sorted(self.stopped), "image_last_used": self.image_last_used, "ports": self.ports}
        _atomic_write(self.path, json.dumps(data, indent=1))


class EventVersions:
    """Event versions (``Envelope.seq``) that never go back, across restarts too.

    The control plane drops an event older than what it applied
    (controlplane/events/apply.py), and versions are the clock's nanoseconds:
    an agent restarted with its clock set back would have every event dropped
    until the clock caught up. So a bound ``reserve`` ns above the latest
    version is kept on disk (rewritten once that much has been issued), and a
    restart starts above it; kill -9 loses nothing.
    """

    RESERVE = 60 * 1_000_000_000

    def __init__(self, state_dir: str, reserve: int = RESERVE) -> None:
        self.path = pathlib.Path(state_dir) / "seq"
        self._reserve = reserve
        try:
            floor = int(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            floor = 0
        self._clock = messages.SeqClock(floor)
        self._bound = 0

    def next(self) -> int:
        seq = self._clock.next()
        if seq >= self._bound:
            self._bound = seq + self._reserve
            try:
                _atomic_write(self.path, f"{self._bound}\n")
            except OSError as exc:
                log.warning("could not persist the event version bound", extra={"path": str(self.path), "error": str(exc)})
        return seq


def _atomic_write(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(text.encode())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
