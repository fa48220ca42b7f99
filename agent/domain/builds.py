"""Image builds: reading Docker's build stream, finding the real error, safe context paths.

Errors::

    ContextError           a git context path escapes its checkout

Docker streams a build as JSON chunks: ``{"stream": …}`` for output,
``{"aux": {"ID": …}}`` for the resulting image and ``{"error": …}`` when it
fails. The job's error text must be the real cause (it is what people search
the dashboard for), so a failure is the daemon's error line plus the last
line the failing step printed.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
import typing

from shared.domain import words

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STEP = re.compile(r"^Step \d+/\d+ : ")
# Docker's own progress chatter, useless as an error cause.
_NOISE = re.compile(r"^( ---> |Removing intermediate container |Successfully (built|tagged) )")


class ContextError(ValueError):
    """A build context path is unsafe (names the field)."""


@dataclasses.dataclass
class BuildStream:
    """Accumulates a build's chunks: output lines, the image id, the error."""

    lines: list[str] = dataclasses.field(default_factory=list)
    image_id: str | None = None
    error: str | None = None
    _partial: str = ""

    def feed(self, chunk: typing.Mapping[str, typing.Any]) -> list[str]:
        """Take one decoded chunk; returns the complete output lines it finished."""
        done: list[str] = []
        if "stream" in chunk and isinstance(chunk["stream"], str):
            text = self._partial + clean(chunk["stream"])
            *complete, self._partial = text.split("\n")
            done = [line.rstrip("\r") for line in complete if line.strip()]
        aux = chunk.get("aux")
        if isinstance(aux, dict) and isinstance(aux.get("ID"), str):
            self.image_id = aux["ID"]
        if chunk.get("error") or chunk.get("errorDetail"):
            detail = chunk.get("errorDetail") or {}
            self.error = clean(str(chunk.get("error") or detail.get("message") or "")).strip() or "unknown build error"
        if self.error is not None and self._partial.strip():
            done.append(self._partial.strip())
            self._partial = ""
        self.lines.extend(done)
        return done

    def flush(self) -> list[str]:
        rest = [self._partial.strip()] if self._partial.strip() else []
        self._partial = ""
        self.lines.extend(rest)
        return rest


def clean(text: str) -> str:
    """Strip the terminal colour codes Docker wraps stderr output in."""
    return _ANSI.sub("", text)


def failure_text(lines: typing.Sequence[str], error: str | None) -> str:
    """The real error of a failed build: the daemon's error plus the failing step's last output."""
    last = last_output_line(lines)
    if error:
        if last and last not in error:
            return f"{error} (last output: {last})"
        return error
    return last or "the build stopped without an error message"


def last_output_line(lines: typing.Sequence[str]) -> str | None:
    """The last line the build itself printed (not Docker's step/progress chatter)."""
    for line in reversed(lines):
        text = line.strip()
        if not text or _NOISE.match(text):
            continue
        if _STEP.match(text):
            # Reached the header of the failing step: it printed nothing.
            return None
        return text
    return None


def safe_subpath(root_field: str, path: str) -> str:
    """Normalise a path inside a checkout; refuse absolute paths and ``..`` escapes."""
    if path.startswith("/"):
        raise ContextError(f"{root_field}: must be relative to the repository, got {path!r}")
    norm = posixpath.normpath(path or ".")
    if norm == ".." or norm.startswith("../"):
        raise ContextError(f"{root_field}: must stay inside the repository, got {path!r}")
    return norm


def safe_ref(ref: str) -> str:
    """A git ref that cannot be mistaken for an option of the git commands it is passed to."""
    if not ref or ref.startswith("-") or any(c.isspace() or c == "\0" for c in ref):
        raise ContextError(f"context.git_ref: not a branch, tag or commit name: {ref!r}")
    return ref


def image_labels(*, image_id: str, host_id: str, job_id: str) -> dict[str, str]:
    return {"a4c.managed": "true", "a4c.image": image_id, "a4c.host": host_id, "a4c.job": job_id}


def waiting_for_slot(place: int) -> str:
    """The progress message of a build waiting for a build slot, ``place`` (1-based) in the local line."""
    return f"waiting for a build slot, {words.ordinal(place)} in line"
