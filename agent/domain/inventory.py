"""Turning Docker's list and disk-usage answers into the wire schema's reports.

Inputs are the raw JSON of ``GET /containers/json``, ``GET /images/json``
and ``GET /system/df``; outputs are :mod:`shared.messages` models. The
caller has already filtered by this host's labels where the Docker API can.
"""

from __future__ import annotations

import datetime
import typing

from agent.domain import containers as spec
from shared import messages

Row = typing.Mapping[str, typing.Any]


def container_info(row: Row) -> messages.ContainerInfo:
    labels = row.get("Labels") or {}
    created = row.get("Created")
    return messages.ContainerInfo(
        container_id=row["Id"],
        workspace_id=labels.get(spec.WORKSPACE) or None,
        job_id=labels.get(spec.JOB) or None,
        name=spec.name_of(row),
        image=row.get("Image") or "",
        state=row.get("State") or "unknown",
        created_at=_iso(created) if isinstance(created, (int, float)) else None,
        ports=spec.summary_ports(row),
    )


def image_info(row: Row) -> messages.ImageInfo:
    labels = row.get("Labels") or {}
    return messages.ImageInfo(
        image_id=row["Id"],
        tags=[t for t in row.get("RepoTags") or [] if t != "<none>:<none>"],
        a4c_image=labels.get(spec.IMAGE) or None,
        job_id=labels.get(spec.JOB) or None,
        size_bytes=int(row.get("Size") or 0),
    )


def inventory(container_rows: typing.Iterable[Row], image_rows: typing.Iterable[Row], host_id: str) -> messages.Inventory:
    # The label filter already ran in Docker; checking again keeps a
    # mis-filtered answer from leaking another host's objects into our report.
    return messages.Inventory(
        containers=[container_info(r) for r in container_rows if spec.is_owned(r.get("Labels"), host_id)],
        images=[image_info(r) for r in image_rows if spec.is_owned(r.get("Labels"), host_id)],
    )


def docker_figures(df: Row) -> dict[str, int]:
    """Docker's own disk-usage totals, bytes."""
    volumes = 0
    for v in df.get("Volumes") or []:
        size = ((v.get("UsageData") or {}).get("Size")) or 0
        volumes += max(0, int(size))
    return {
        "images": int(df.get("LayersSize") or 0),
        "containers": sum(int(c.get("SizeRw") or 0) for c in df.get("Containers") or []),
        "volumes": volumes,
        "build_cache": sum(int(b.get("Size") or 0) for b in df.get("BuildCache") or []),
    }


def unused_build_cache(df: Row) -> int:
    return sum(int(b.get("Size") or 0) for b in df.get("BuildCache") or [] if not b.get("InUse"))


def workspace_sizes(df: Row, host_id: str) -> dict[str, int]:
    """Writable-layer bytes of each of this host's workspaces."""
    out: dict[str, int] = {}
    for c in df.get("Containers") or []:
        labels = c.get("Labels") or {}
        if spec.is_owned(labels, host_id) and labels.get(spec.WORKSPACE):
            out[labels[spec.WORKSPACE]] = int(c.get("SizeRw") or 0)
    return out


def parse_time(value: str | None) -> float | None:
    """Docker's RFC 3339 timestamps (nanoseconds, ``Z``) as epoch seconds; zero time is None."""
    if not value or value.startswith("0001-01-01"):
        return None
    text = value.rstrip("Z")
    offset = "+00:00"
    for sign in ("+", "-"):
        head, sep, tail = text.rpartition(sign)
        if sep and ":" in tail and "T" in head:
            text, offset = head, sign + tail
            break
    whole, _, frac = text.partition(".")
    try:
        base = datetime.datetime.fromisoformat(whole + offset)
    except ValueError:
        return None
    return base.timestamp() + (float("0." + frac) if frac.isdigit() else 0.0)


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).isoformat()
