"""Where the CLI finds its server and token: flags, then environment, then the file ``a4c login`` wrote.

The file is ``$XDG_CONFIG_HOME/a4c/config.yaml`` (default ``~/.config/a4c``),
mode 0600 because it holds a bearer token. :func:`resolve` is the precedence
rule; it is pure so that it can be read (and tested) in one place.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import typing

import yaml

from a4c import errors

SERVER_ENV = "A4C_SERVER"
TOKEN_ENV = "A4C_TOKEN"  # noqa: S105 - the variable's name, not a token
KEYS = ("server", "token")


def path(environ: typing.Mapping[str, str] = os.environ) -> pathlib.Path:
    # Read on every call, not at import: tests and wrappers change the environment.
    base = environ.get("XDG_CONFIG_HOME") or str(pathlib.Path(environ.get("HOME") or pathlib.Path.home()) / ".config")
    return pathlib.Path(base) / "a4c" / "config.yaml"


def load(file: pathlib.Path) -> dict[str, str]:
    """The saved server and token; a missing file is empty, a damaged one is a usage problem naming the file."""
    try:
        data = yaml.safe_load(file.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, yaml.YAMLError) as exc:
        raise errors.UsageProblem(f"cannot read {file} ({type(exc).__name__}: {exc}); run a4c login again") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise errors.UsageProblem(f"{file} is not a mapping of server and token; run a4c login again")
    return {k: str(data[k]) for k in KEYS if data.get(k)}


def save(file: pathlib.Path, server: str, token: str) -> pathlib.Path:
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created 0600 (not chmod-ed after writing): the token is never readable by others, not even briefly.
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump({"server": server, "token": token}, f, sort_keys=False)
    file.chmod(0o600)  # an existing file keeps its old mode through os.open
    return file


@dataclasses.dataclass(frozen=True)
class Setting:
    value: str | None
    source: str  # where it came from, for error messages: "--server", "A4C_SERVER", the file's path


def resolve(
    flag: str | None, flag_name: str, environ: typing.Mapping[str, str], env_name: str, saved: typing.Mapping[str, str], key: str, file: pathlib.Path
) -> Setting:
    """Flags beat the environment, which beats the saved file. Empty values count as unset."""
    if flag:
        return Setting(flag, flag_name)
    if environ.get(env_name):
        return Setting(environ[env_name], env_name)
    if saved.get(key):
        return Setting(saved[key], str(file))
    return Setting(None, "")


def check_token(setting: Setting) -> str:
    if not setting.value:
        raise errors.UsageProblem(f"no token given: pass --token, set {TOKEN_ENV}, or run a4c login --server URL --token TOKEN")
    return setting.value


def check_server(setting: Setting) -> str:
    if setting.value is None:
        raise errors.UsageProblem(f"no server given: pass --server URL, set {SERVER_ENV}, or run a4c login --server URL --token TOKEN")
    if not setting.value.startswith(("http://", "https://")):
        raise errors.UsageProblem(f"{setting.source} = {setting.value!r} is not an http:// or https:// URL")
    return setting.value
