"""ansible/roles/a4c_release on this machine: real bundles, a real pip, a prefix of the test's own.

The rollout tests (test_rollout.py) show the role under the agent on systemd
servers; this module runs it alone against localhost (``-c local``), which
takes seconds per install, for what those do not reach: which releases are
pruned, and what is refused before anything is installed.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shutil
import sys

import pytest
import yaml

from tests.packaging import bundles, playbook, wheels

pytestmark = pytest.mark.timeout(900)

FLIP_TASK = "TASK [a4c_release : Point current at the release]"
INSTALL_TASK = "TASK [a4c_release : Install the bundle's wheels into the virtualenv, with no package index]"


@dataclasses.dataclass
class Host:
    """localhost, with the role's prefix and staging directory under a temporary directory."""

    workdir: pathlib.Path
    prefix: pathlib.Path
    staging: pathlib.Path
    play: pathlib.Path

    def run(self, bundle: pathlib.Path, **extra: object) -> playbook.Result:
        variables = {"bundle": str(bundle), "prefix": str(self.prefix), "staging": str(self.staging), **extra}
        return playbook.run(
            self.workdir / "ansible-home",
            "localhost,",
            "-c",
            "local",
            "-e",
            json.dumps({"ansible_python_interpreter": sys.executable, **variables}),
            playbook_file=self.play,
        )

    def releases(self) -> list[str]:
        return sorted(p.name for p in (self.prefix / "releases").iterdir())

    def current(self) -> str:
        return str((self.prefix / "current").readlink())


@pytest.fixture(scope="module")
def versions(release_bundle: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    """Three bundles of this checkout under three versions, oldest first."""
    first = bundles.version(release_bundle)
    second = wheels.next_version(first)
    third = wheels.next_version(second)
    dest = tmp_path_factory.mktemp("bundles")
    return {first: release_bundle, second: bundles.build(dest, version=second), third: bundles.build(dest, version=third)}


@pytest.fixture
def host(tmp_path: pathlib.Path) -> Host:
    play = tmp_path / "play.yml"
    role = {
        "ansible.builtin.import_role": {"name": "a4c_release"},
        "vars": {
            "a4c_release_bundle": "{{ bundle }}",
            "a4c_release_prefix": "{{ prefix }}",
            "a4c_release_version": "{{ version | default('') }}",
            "a4c_release_requirements": "requirements-agent.txt",
            "a4c_release_python": sys.executable,
            "a4c_release_keep": "{{ keep | default(3) }}",
            "a4c_release_staging_dir": "{{ staging }}",
        },
    }
    play.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": [role]}]))
    return Host(tmp_path, tmp_path / "opt" / "a4c-test", tmp_path / "staging", play)


def _ok(result: playbook.Result) -> playbook.Result:
    assert result.returncode == 0, str(result)
    return result


def test_the_newest_releases_are_kept_and_never_the_one_running(host: Host, versions: dict[str, pathlib.Path]) -> None:
    first, second, third = versions
    _ok(host.run(versions[first], keep=2))
    _ok(host.run(versions[second], keep=2))
    assert host.releases() == sorted([first, second]) and host.current() == str(host.prefix / "releases" / second)
    # A rollback to the first: only the flip.
    back = _ok(host.run(versions[second], keep=2, version=first))
    assert [t for t in back.changed_tasks() if "a4c_release" in t] == [f"{FLIP_TASK} changed: [localhost]"], back.changed_tasks()
    assert host.current() == str(host.prefix / "releases" / first)
    # The third, keeping two: the second (newer, but not running) goes; the first, which still runs until its restart, stays.
    _ok(host.run(versions[third], keep=2))
    assert host.current() == str(host.prefix / "releases" / third)
    assert host.releases() == sorted([first, third])
    again = _ok(host.run(versions[third], keep=2))
    assert again.recap["localhost"]["changed"] == 0, again.changed_tasks()
    assert list(host.staging.iterdir()) == [], "the copied and unpacked bundle is removed"


def test_a_swapped_tarball_is_refused_before_anything_is_installed(host: Host, versions: dict[str, pathlib.Path], tmp_path: pathlib.Path) -> None:
    first, second, _ = versions
    # The second's checksum file beside a tarball of that name holding the first's bytes.
    swapped = tmp_path / "swapped" / versions[second].name
    swapped.parent.mkdir()
    shutil.copy(versions[first], swapped)
    shutil.copy(f"{versions[second]}.sha256", f"{swapped}.sha256")
    result = host.run(swapped)
    assert result.returncode != 0, str(result)
    assert result.failed_tasks("localhost") == ["TASK [a4c_release : Verify the bundle against its checksum file]"], str(result)
    assert INSTALL_TASK not in result.output
    assert not (host.prefix / "releases").exists() and not (host.prefix / "current").exists()
    assert list(host.staging.iterdir()) == [], "the refused copy is removed"


def test_a_rollback_to_a_version_the_host_does_not_have_is_refused_by_name(host: Host, versions: dict[str, pathlib.Path]) -> None:
    first, second, _ = versions
    _ok(host.run(versions[first]))
    result = host.run(versions[first], version=second)
    assert result.returncode != 0, str(result)
    assert result.failed_tasks("localhost") == ["TASK [a4c_release : Assert the release is installed or in the bundle]"], str(result)
    assert f"version {second} is not installed under {host.prefix}/releases and the bundle holds {first}" in result.output
    assert host.current() == str(host.prefix / "releases" / first), "current is left alone"
