"""A workspace's main process: what runs, whether it stayed up, and why not.

The rule (docs/workspaces.md), as Coder, devcontainers and Gitpod do it:

* Docker's init (tini, ``docker-init``) is PID 1 of every workspace, so
  SIGTERM reaches the main process and a stop takes well under its timeout
  even when the image's own command would ignore SIGTERM as PID 1.
* An explicit ``command`` (API field, ``a4c workspaces create --command``)
  runs as given: it replaces the image's CMD, the image's ENTRYPOINT stays.
* Otherwise the image's ENTRYPOINT + CMD runs as it is, unless it would exit
  at once without a terminal: nothing at all, or an interactive program
  (a shell such as ``sh``/``bash``/``/bin/zsh``, or a bare REPL such as
  ``python3``) given no script and no ``-c``. Then a keep-alive runs
  instead (:data:`KEEP_ALIVE`, POSIX ``sh`` only: it exits 0 on SIGTERM); a
  wrapper ENTRYPOINT (``docker-entrypoint.sh``, ``tini --``) is kept and
  gets the keep-alive as its arguments, a shell ENTRYPOINT is replaced too.
"""

from __future__ import annotations

import dataclasses
import posixpath
import typing

INTERACTIVE = frozenset(
    {
        "sh",
        "bash",
        "ash",
        "dash",
        "zsh",
        "ksh",
        "mksh",
        "fish",
        "tcsh",
        "csh",
        "busybox",
        "python",
        "python3",
        "node",
        "irb",
        "ipython",
        "lua",
        "perl",
        "php",
    }
)
# Portable (busybox, dash, bash): sleeps in the background so the trap runs at once.
# It says why in the workspace's log first: `a4c workspaces logs` is where a
# user looks when their image's own command is not running.
KEEP_ALIVE = [
    "/bin/sh",
    "-c",
    'echo "a4c: the image\'s command would exit at once, so this keeps the workspace up; open a shell with: a4c workspaces exec NAME -- bash"; '
    'trap "exit 0" TERM INT HUP; while :; do sleep 3600 & wait $!; done',
]
LOG_TAIL_LINES = 20
LOG_TAIL_CHARS = 1500


@dataclasses.dataclass(frozen=True)
class MainProcess:
    """What the container is created with: ``entrypoint``/``command`` None keep the image's."""

    entrypoint: list[str] | None
    command: list[str] | None
    why: str


def _interactive(argv: typing.Sequence[str]) -> bool:
    """A program that reads commands from stdin and so exits at once without a terminal."""
    if not argv:
        return True
    program = posixpath.basename(argv[0])
    rest = list(argv[1:])
    if program == "busybox" and rest and rest[0] in INTERACTIVE:
        rest = rest[1:]
    if program not in INTERACTIVE:
        return False
    # A script, "-c CODE", "-m module" or "-e code" means it has work to do.
    return all(arg.startswith("-") and arg not in ("-c", "-m", "-e") for arg in rest)


def decide(command: typing.Sequence[str] | None, image_config: typing.Mapping[str, typing.Any] | None) -> MainProcess:
    """The main process of a workspace from ``command`` (the spec's) and the image's ``Config``."""
    if command:
        return MainProcess(None, list(command), "the workspace's command")
    config = image_config or {}
    entrypoint = list(config.get("Entrypoint") or [])
    cmd = list(config.get("Cmd") or [])
    if not entrypoint:
        if _interactive(cmd):
            what = f"the image's command {cmd!r} would exit at once without a terminal" if cmd else "the image has no command"
            return MainProcess(None, list(KEEP_ALIVE), f"keep-alive: {what}")
        return MainProcess(None, None, "the image's command")
    if _interactive(entrypoint + cmd) and posixpath.basename(entrypoint[0]) in INTERACTIVE:
        return MainProcess(list(KEEP_ALIVE[:1]), list(KEEP_ALIVE[1:]), f"keep-alive: the image's entrypoint {entrypoint!r} is an interactive shell")
    if cmd and _interactive(cmd):
        return MainProcess(None, list(KEEP_ALIVE), f"keep-alive after the image's entrypoint: its command {cmd!r} would exit at once")
    return MainProcess(None, None, "the image's entrypoint and command")


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of a container as ``docker inspect`` tells it."""

    running: bool
    restarting: bool
    started_at: str
    restart_count: int
    exit_code: int | None
    oom: bool

    @classmethod
    def of(cls, inspect: typing.Mapping[str, typing.Any]) -> Run:
        state = inspect.get("State") or {}
        return cls(
            running=bool(state.get("Running")) and not state.get("Restarting"),
            restarting=bool(state.get("Restarting")),
            started_at=str(state.get("StartedAt") or ""),
            restart_count=int(inspect.get("RestartCount") or 0),
            exit_code=state.get("ExitCode"),
            oom=bool(state.get("OOMKilled")),
        )


def stayed_up(before: Run, after: Run) -> bool:
    """Whether the run seen at start is the one running after the settle period (no exit, no restart)."""
    return after.running and after.started_at == before.started_at and after.restart_count == before.restart_count


def log_tail(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines() if line.strip()][-LOG_TAIL_LINES:]
    out = "\n".join(lines)
    return out[-LOG_TAIL_CHARS:]


def failure_reason(what: str, run: Run, restarts: int, logs: str) -> str:
    """The failed workspace's reason: what happened, the exit code, the restart count and the last log lines."""
    code = "killed: out of memory" if run.oom else f"exit code {run.exit_code}"
    text = f"{what} ({code}, restarted {restarts} time{'s' if restarts != 1 else ''}); stopped it"
    tail = log_tail(logs)
    return f"{text}; last log lines:\n{tail}" if tail else f"{text}; it printed nothing"
