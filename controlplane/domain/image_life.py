"""Changing and deleting a registered image: what an update leaves, and why a delete is refused.

Pure decisions; controlplane/services/image_edits.py reads the rows and
writes the outcome.
"""

from __future__ import annotations

import dataclasses
import typing

SHOWN = 10  # names listed in a refusal; the rest are counted


@dataclasses.dataclass(frozen=True)
class Source:
    """Where an image is built from: an inline Dockerfile, or a git context (url, ref, path)."""

    dockerfile: str | None
    git_url: str | None
    git_ref: str | None
    git_path: str | None


class Unchangeable(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field


def updated_source(current: Source, change: typing.Mapping[str, str]) -> Source:
    """``current`` with ``change`` (the fields a caller gave) applied.

    A ``dockerfile`` makes the image inline (its git context goes); a
    ``git_url`` makes it a git context (the Dockerfile goes, ref and path
    default to HEAD and "."); ``git_ref``/``git_path`` alone change a git
    context and mean nothing to an inline image.
    """
    if "dockerfile" in change and "git_url" in change:
        raise Unchangeable("dockerfile", "give at most one of dockerfile or git_url")
    if "dockerfile" in change:
        for name in ("git_ref", "git_path"):
            if name in change:
                raise Unchangeable(name, f"{name} goes with git_url, not dockerfile")
        return Source(change["dockerfile"], None, None, None)
    if "git_url" in change:
        return Source(None, change["git_url"], change.get("git_ref") or current.git_ref or "HEAD", change.get("git_path") or current.git_path or ".")
    if current.git_url is None:
        for name in ("git_ref", "git_path"):
            if name in change:
                raise Unchangeable(
                    name, f"this image is built from an inline Dockerfile; give git_url to build it from git ({name} alone means nothing)"
                )
        return current
    return Source(None, current.git_url, change.get("git_ref", current.git_ref), change.get("git_path", current.git_path))


def _listed(names: typing.Sequence[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def deletion_refusal(visible_workspaces: typing.Sequence[str], hidden_workspaces: int, builds: typing.Sequence[str]) -> str | None:
    """Why an image cannot be deleted now, or None.

    ``visible_workspaces``: names of the live workspaces using it that the
    caller may see; ``hidden_workspaces``: how many more belong to other users
    (a shared image), counted but never named. ``builds``: ids of its builds
    still in flight, which would otherwise record an image that no longer exists.
    """
    reasons = []
    if visible_workspaces or hidden_workspaces:
        parts = []
        if visible_workspaces:
            parts.append(f"workspace{'s' if len(visible_workspaces) > 1 else ''} {_listed(visible_workspaces)}")
        if hidden_workspaces:
            parts.append(f"{hidden_workspaces} workspace{'s' if hidden_workspaces > 1 else ''} of other users")
        reasons.append(f"it is used by {' and '.join(parts)}; delete those first")
    if builds:
        reasons.append(f"build{'s' if len(builds) > 1 else ''} {_listed(builds)} still in flight; wait for them or cancel them (a4c jobs cancel ID)")
    return "; ".join(reasons) or None
