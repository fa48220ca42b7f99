"""``a4c ci sign``: sign a build request for the ``<prefix>.ci-builds`` topic as a CI system (docs/ci.md).

Works offline: it needs the CI system's name and key (``POST /v1/ci-systems``
shows the key once), never the API. The output is one line, ready for any
Kafka producer, e.g. ``a4c ci sign --system jenkins '{"image": "base"}' | kcat -P -b broker:9092 -t a4c.ci-builds``.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

import click

from a4c import errors
from a4c.session import Group
from shared import signing

KEY_ENV = "A4C_CI_KEY"


@click.group("ci", cls=Group)
def ci() -> None:
    """CI systems: sign build requests for the ci-builds topic."""


@ci.command("sign")
@click.option("--system", required=True, metavar="NAME", help="The CI system's name (POST /v1/ci-systems).")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False), help=f"File holding the CI system's key [else env {KEY_ENV}].")
@click.argument("request", default="-", metavar="JSON")
def sign(system: str, key_file: str | None, request: str) -> None:
    """Print JSON (a build request: image, git_ref, idempotency_key, requested_by; - reads stdin) signed as SYSTEM."""
    key = pathlib.Path(key_file).read_text(encoding="utf-8").strip() if key_file else os.environ.get(KEY_ENV, "").strip()
    if not key:
        raise errors.UsageProblem(f"--key-file: give the CI system's key in a file or in {KEY_ENV}")
    text = sys.stdin.read() if request == "-" else request
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise errors.UsageProblem(f"JSON: not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise errors.UsageProblem('JSON: must be an object such as {"image": "base"}')
    click.echo(signing.sign_ci_build(body, system, key).decode())
