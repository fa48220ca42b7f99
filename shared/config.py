"""Load a deployable's settings from one YAML file plus ``A4C_…`` overrides.

Errors::

    ConfigError            any problem that stops startup; str() is one line
                           naming the key and what was expected

Each deployable describes its settings as pydantic models (documented groups,
``extra="forbid"`` so that a misspelt key is an error rather than silently
ignored). This module only knows how to merge the sources and how to turn a
validation failure into a single line an operator can act on.

Environment overrides use ``__`` between levels: ``A4C_DATABASE__URL`` sets
``database.url``. Values are parsed as YAML scalars, so ``A4C_HTTP__PORT=8080``
is an int and ``A4C_KAFKA__BOOTSTRAP_SERVERS='[a:9092, b:9092]'`` a list.
"""

from __future__ import annotations

import os
import pathlib
import typing

import pydantic
import yaml

ENV_PREFIX = "A4C_"

SettingsT = typing.TypeVar("SettingsT", bound=pydantic.BaseModel)


class ConfigError(Exception):
    """A setting is missing, malformed or unknown. ``str()`` is one line."""


class StrictModel(pydantic.BaseModel):
    """Base for every settings group: unknown keys are errors, values are frozen."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, validate_default=True)


def load(
    model: type[SettingsT],
    path: str | os.PathLike[str] | None = None,
    *,
    environ: typing.Mapping[str, str] | None = None,
    env_prefix: str = ENV_PREFIX,
    overrides: typing.Mapping[str, typing.Any] | None = None,
) -> SettingsT:
    """Read ``path`` (optional), apply environment then explicit overrides, validate."""
    data: dict[str, typing.Any] = {}
    if path is not None:
        data = _read_yaml(pathlib.Path(path))
    env = os.environ if environ is None else environ
    for key, raw in sorted(env.items()):
        if not key.startswith(env_prefix) or "__" not in key[len(env_prefix) :]:
            # Single-level A4C_ variables (A4C_TEST_DATABASE_URL, A4C_CONFIG…) are
            # not settings overrides; only SECTION__KEY forms are.
            continue
        dotted = key[len(env_prefix) :].lower().replace("__", ".")
        _set_dotted(data, dotted, _parse_scalar(raw, key))
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(describe(exc)) from None


def describe(exc: pydantic.ValidationError) -> str:
    """One line for the first error: ``key.path: reason (got 'value')``."""
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"config error: {where}: unknown key (check the spelling; see the example config)"
    if kind == "missing":
        return f"config error: {where}: required key is missing"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    got = err.get("input")
    shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
    more = len(exc.errors()) - 1
    tail = f"; and {more} more error(s)" if more else ""
    return f"config error: {where}: {msg}{shown}{tail}"


def _read_yaml(path: pathlib.Path) -> dict[str, typing.Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config error: cannot read {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config error: {path}: not valid YAML{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config error: {path}: top level must be a mapping of sections")
    return data


def _parse_scalar(raw: str, key: str) -> typing.Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"config error: environment {key}: not a valid value") from None


def _set_dotted(data: dict[str, typing.Any], dotted: str, value: typing.Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[leaf] = value
