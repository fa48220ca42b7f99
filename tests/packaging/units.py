"""Reading systemd unit files: sections of ``Key=Value`` lines, keys that may repeat."""

from __future__ import annotations

import pathlib

UNITS_DIR = pathlib.Path(__file__).resolve().parents[2] / "packaging" / "systemd"


def unit_files() -> list[pathlib.Path]:
    return sorted(UNITS_DIR.glob("*.service"))


def parse(text: str) -> dict[str, dict[str, list[str]]]:
    """{section: {key: [values in order]}}; comments and blank lines skipped."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        if current is None or "=" not in line:
            raise ValueError(f"not a unit file line: {raw!r}")
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    """A systemd time span as used in these units: 30s, 5min, 300 (seconds)."""
    for suffix, factor in (("min", 60.0), ("ms", 0.001), ("s", 1.0)):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)
