"""Starting and stopping the server processes the harness owns.

Each server runs in its own session (so a stray signal to the test process
does not reach it, and a hard stop can take its whole process group) with its
output in a log file, whose tail goes into every startup error.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import typing


class ProcessError(RuntimeError):
    """A harness server could not be started or stopped."""


def spawn(
    argv: typing.Sequence[str],
    log_path: pathlib.Path,
    *,
    env: typing.Mapping[str, str] | None = None,
    user: str | None = None,
    cwd: pathlib.Path | None = None,
) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                user=user,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as error:
            raise ProcessError(f"cannot run {argv[0]}: {error}") from error


def stop(process: subprocess.Popen, *, grace: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Ask politely with ``sig``, then kill the whole process group after ``grace`` seconds."""
    if process.poll() is not None:
        return
    try:
        process.send_signal(sig)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    if process.poll() is None or _group_alive(process.pid):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


def kill(process: subprocess.Popen) -> None:
    """Stop at once, as a crash would."""
    stop(process, grace=5.0, sig=signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def log_tail(log_path: pathlib.Path, lines: int = 30) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
