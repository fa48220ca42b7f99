"""The JVM servers' jars: fetched from Maven Central once into a cache, then reused.

Each server has a folder under ``tests/harness/jvm/`` with a small ``pom.xml``;
:func:`fetch` runs ``mvn dependency:copy-dependencies`` for it into
``~/.cache/a4c-test/jvm/<name>-<hash of the folder>/lib`` and leaves a stamp,
so a second run (or a second xdist worker) downloads nothing. A missing
``java`` or ``mvn`` is an error that names the Debian package to install:
never a silent fall-back to a stand-in.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pathlib
import shutil
import subprocess

HERE = pathlib.Path(__file__).with_name("jvm")
CACHE = pathlib.Path(os.environ.get("A4C_TEST_JVM_CACHE", pathlib.Path.home() / ".cache" / "a4c-test" / "jvm"))
_STAMP = ".fetched"


class JvmError(RuntimeError):
    """Java or Maven is missing, or the artifacts could not be fetched."""


def java() -> str:
    """The ``java`` to run servers with: ``$JAVA_HOME/bin/java``, else the one on the PATH."""
    home = os.environ.get("JAVA_HOME")
    candidate = pathlib.Path(home, "bin", "java") if home else None
    if candidate is not None and candidate.exists():
        return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise JvmError("no java on the PATH: install Debian's openjdk-17-jre-headless (make deps does)")
    return found


def fetch(name: str, *, extra_args: tuple[str, ...] = ()) -> pathlib.Path:
    """The folder holding every jar of server ``name``, fetched now if not cached yet."""
    source = HERE / name
    digest = hashlib.sha256()
    for path in sorted(source.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(source).as_posix().encode() + b"\0" + path.read_bytes())
    target = CACHE / f"{name}-{digest.hexdigest()[:12]}"
    lib = target / "lib"
    if (target / _STAMP).exists():
        return lib
    target.mkdir(parents=True, exist_ok=True)
    # One fetch at a time per cache entry: xdist workers may all ask at once.
    with open(target / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / _STAMP).exists():
            return lib
        mvn = shutil.which("mvn")
        if mvn is None:
            raise JvmError("no mvn on the PATH: install Debian's maven (make deps does)")
        shutil.rmtree(lib, ignore_errors=True)
        argv = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(source / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={lib}",
            *extra_args,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise JvmError(f"fetching {name}'s jars failed ({' '.join(argv)}):\n{(done.stdout + done.stderr)[-3000:]}")
        (target / _STAMP).write_text(" ".join(sorted(p.name for p in lib.iterdir())) + "\n")
    return lib


def resource(name: str, file: str) -> pathlib.Path:
    """A file kept beside server ``name``'s pom (a logging config, a launcher)."""
    return HERE / name / file
