"""`make lint` is clean, and each linter in it fails on a deliberate finding, naming the rule."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
ESLINT = ROOT / "tools" / "eslint" / "node_modules" / ".bin" / "eslint"


def _run(argv: list[str], cwd: pathlib.Path = ROOT, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1")
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, input=stdin, env=env, timeout=600)


def _eslint() -> pathlib.Path:
    if not ESLINT.exists():
        done = _run(["make", "eslint"])
        assert done.returncode == 0, done.stdout + done.stderr
    return ESLINT


@pytest.mark.timeout(900)
def test_make_lint_is_clean() -> None:
    # The venv this suite runs in has the linters; make's own venv step would
    # reinstall the project into it.
    done = _run(["make", "--no-print-directory", "lint", "LINT_DEPS=eslint", f"VENV={BIN.parent}"])
    assert done.returncode == 0, f"make lint found problems:\n{done.stdout}\n{done.stderr}"


@pytest.fixture
def probe(tmp_path: pathlib.Path) -> pathlib.Path:
    """A scratch tree with the project's lint configuration."""
    for name in ("pyproject.toml", ".yamllint"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_ruff_names_a_blind_except_a_suppression_of_a_rule_that_does_not_run_and_a_bare_noqa(probe: pathlib.Path) -> None:
    (probe / "bad.py").write_text(
        textwrap.dedent(
            """\
            def f() -> None:
                try:
                    pass
                except Exception:
                    return None


            x = 1  # noqa: ANN001
            y = 2  # noqa
            """
        )
    )
    done = _run([str(BIN / "ruff"), "check", "--no-cache", "--output-format", "concise", "bad.py"], cwd=probe)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "BLE001" in done.stdout, done.stdout
    assert "RUF100" in done.stdout and "ANN001" in done.stdout, done.stdout
    assert "bad.py:9:8: PGH004" in done.stdout, done.stdout


def test_ruff_format_check_fails_on_unformatted_code(probe: pathlib.Path) -> None:
    (probe / "ugly.py").write_text("x = {'a':1}\n")
    done = _run([str(BIN / "ruff"), "format", "--check", "--no-cache", "ugly.py"], cwd=probe)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "File would be reformatted" in done.stdout and "--> ugly.py" in done.stdout, done.stdout


def test_mypy_names_a_type_error_an_unused_ignore_and_a_bare_ignore(probe: pathlib.Path) -> None:
    (probe / "bad.py").write_text(
        textwrap.dedent(
            """\
            count: int = "three"
            fine: int = 3  # type: ignore[assignment]
            other: int = "four"  # type: ignore
            """
        )
    )
    done = _run([str(BIN / "mypy"), "--config-file", "pyproject.toml", "--no-incremental", "bad.py"], cwd=probe)
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'bad.py:1: error: Incompatible types in assignment (expression has type "str", variable has type "int")  [assignment]' in done.stdout
    assert 'bad.py:2: error: Unused "type: ignore" comment  [unused-ignore]' in done.stdout, done.stdout
    assert "bad.py:3: error" in done.stdout and "[ignore-without-code]" in done.stdout, done.stdout


def test_yamllint_names_a_duplicated_key(probe: pathlib.Path) -> None:
    (probe / "bad.yml").write_text("a: 1\na: 2\n")
    done = _run([str(BIN / "yamllint"), "--strict", "-f", "parsable", "bad.yml"], cwd=probe)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "(key-duplicates)" in done.stdout, done.stdout


def test_eslint_names_an_undefined_name_in_dashboard_code() -> None:
    # Linted as if it were a file of the dashboard, so the project's config applies.
    done = _run(
        [str(_eslint()), "--config", "tools/eslint/eslint.config.js", "--stdin", "--stdin-filename", "controlplane/web/static/js/probe.js"],
        stdin="export const total = undefinedThing + 1;\n",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "'undefinedThing' is not defined  no-undef" in done.stdout, done.stdout


# A suppression comment and what follows it. Only ruff, mypy, ESLint and
# yamllint run (make lint), and each must be told which rule it lets pass:
# coverage's pragmas, bandit's nosec, pylint's and pyright's comments suppress
# tools that never run, so they only mislead the reader.
_SUPPRESSION = re.compile(
    r"(?:#|//|/\*)\s*(?P<tool>noqa|type:\s*ignore|pragma|nosec|pylint:|pyright:|eslint-disable(?:-next-line|-line)?|yamllint disable(?:-line|-file)?)(?P<rest>.*)"
)
_NAMED = {
    "noqa": re.compile(r":\s*[A-Z]+[0-9]+"),
    "type": re.compile(r"\[[a-z-]+"),
    "eslint-disable": re.compile(r"\s+@?[a-z][\w/-]*"),
    "yamllint": re.compile(r"\s+rule:[a-z-]+"),
}


def unnamed_suppression(line: str) -> str | None:
    """The suppression on ``line`` that names no rule of a linter make lint runs, or None."""
    found = _SUPPRESSION.search(line)
    if found is None:
        return None
    tool = found["tool"].split()[0].split(":")[0]
    tool = "eslint-disable" if tool.startswith("eslint-disable") else tool
    named = _NAMED.get(tool)
    return None if named is not None and named.match(found["rest"]) else found.group(0).strip()


@pytest.mark.parametrize(
    ("line", "flagged"),
    [
        ("x = 1  # noqa: E731 - a lambda on purpose", False),
        ("x = 1  # type: ignore[arg-type]", False),
        ("// eslint-disable-next-line no-console -- why", False),
        ("a: 1  # yamllint disable-line rule:line-length", False),
        ("x = 1  # noqa", True),
        ("x = 1  # type: ignore", True),
        ("if __name__ == '__main__':  # pragma: no cover", True),
        ("run(cmd, shell=True)  # nosec", True),
        ("x = 1  # pylint: disable=invalid-name", True),
        ("/* eslint-disable */", True),
        ("# yamllint disable", True),
        ("plain = 'no suppression here'", False),
    ],
)
def test_a_suppression_counts_as_named_only_with_a_rule_of_a_linter_that_runs(line: str, flagged: bool) -> None:
    assert (unnamed_suppression(line) is not None) == flagged


def test_every_suppression_in_the_tree_names_a_rule_of_a_linter_that_runs() -> None:
    files = _run(["git", "ls-files", "*.py", "*.js", "*.yml", "*.yaml", "*.toml", "*.cfg", "*.sh"]).stdout.split()
    # This file writes bad suppressions into probes on purpose.
    files = [name for name in files if name != "tests/test_lint.py"]
    found = [
        f"{name}:{number}: {bad}"
        for name in files
        if (ROOT / name).is_file()
        for number, line in enumerate((ROOT / name).read_text(errors="replace").splitlines(), 1)
        if (bad := unnamed_suppression(line)) is not None
    ]
    assert not found, "suppressions that name no rule of a linter make lint runs:\n" + "\n".join(found)
