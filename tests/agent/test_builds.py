"""Image builds through signed commands: inline Dockerfiles, git contexts, real error text, deadlines, a slot limit."""

from __future__ import annotations

import pathlib
import secrets
import subprocess
import typing

import pytest

from shared import messages
from tests.agent import conftest
from tests.harness import wait

K = messages.CommandKind

pytestmark = [pytest.mark.docker, pytest.mark.kafka]


def _build_containers(kit: conftest.Kit, shell: str) -> list[str]:
    """Containers running a RUN step (Docker lists them as ``/bin/sh -c '<shell>'``)."""
    return [row["Id"] for row in kit.docker_client.api.containers(all=True) if row.get("Command") == f"/bin/sh -c '{shell}'"]


def _tag() -> str:
    return f"a4c-test/built-{secrets.token_hex(3)}:1"


def _build(job_id: str, tag: str, **context: typing.Any) -> messages.BuildCommand:
    return messages.BuildCommand(job_id=job_id, image_id=f"img-{job_id}", tag=tag, context=messages.BuildContext(**context))


async def test_an_inline_dockerfile_builds_a_labelled_image_and_streams_its_log(kit: conftest.Kit) -> None:
    agent = kit.agent()
    tag = _tag()
    dockerfile = f"FROM {kit.base_image}\nRUN echo built-by-the-agent\n"
    await kit.send(agent, K.IMAGE_BUILD, _build("b-inline", tag, dockerfile=dockerfile))

    result = await kit.events.result("b-inline", timeout=60)
    assert result["ok"], result
    image = kit.docker_client.images.get(tag)
    assert result["result"]["image_id"] == image.id
    assert result["result"]["tag"] == tag and result["result"]["digest"]
    assert image.labels["a4c.image"] == "img-b-inline"
    assert image.labels["a4c.host"] == agent.host_id and image.labels["a4c.managed"] == "true"
    lines = [line for e in kit.events.of("job.log", job_id="b-inline") for line in e.payload["lines"]]
    assert "built-by-the-agent" in lines
    assert any(line.startswith("Step 2/") for line in lines)
    log_seqs = [e.seq for e in kit.events.of("job.log", job_id="b-inline")]
    done = kit.events.of("job.result", job_id="b-inline")[0]
    assert max(log_seqs) < done.seq, "log lines stream before the result"
    # The next inventory lists the new image as this host's.
    # One taken after the result: an inventory during the build may catch the
    # image between Docker committing it and tagging it (no tags yet).
    inventory = await kit.events.wait_for("inventory", host_id=agent.host_id, where=lambda e: e.seq > done.seq)
    assert inventory.payload["images"] == [
        {"image_id": image.id, "tags": [tag], "a4c_image": "img-b-inline", "job_id": "b-inline", "size_bytes": image.attrs["Size"]}
    ]


async def test_a_git_context_is_cloned_at_its_ref_and_built_from_its_path(kit: conftest.Kit, tmp_path: pathlib.Path) -> None:
    repo = tmp_path / "repo"
    (repo / "app").mkdir(parents=True)
    (repo / "app" / "Dockerfile").write_text(f"FROM {kit.base_image}\nCOPY greeting.txt /greeting.txt\nRUN cat /greeting.txt\n")
    (repo / "app" / "greeting.txt").write_text("hello from the release branch\n")

    def git(*args: str) -> str:
        env = {
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com",
            "PATH": "/usr/bin:/bin",
        }
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout.strip()

    git("init", "-q", "-b", "main")
    git("add", ".")
    git("commit", "-qm", "release")
    git("branch", "release")
    released = git("rev-parse", "HEAD")
    # main moves on; the build must use the release branch.
    (repo / "app" / "greeting.txt").write_text("newer text on main\n")
    git("commit", "-qam", "later")

    agent = kit.agent()
    tag = _tag()
    await kit.send(agent, K.IMAGE_BUILD, _build("b-git", tag, git_url=f"file://{repo}", git_ref="release", git_path="app"))

    result = await kit.events.result("b-git", timeout=60)
    assert result["ok"], result
    assert result["result"]["git_commit"] == released
    lines = [line for e in kit.events.of("job.log", job_id="b-git") for line in e.payload["lines"]]
    assert "hello from the release branch" in lines
    assert "newer text on main" not in lines
    assert kit.docker_client.images.get(tag).id == result["result"]["image_id"]
    assert kit.events.of("job.progress", job_id="b-git", phase="cloning")


async def test_a_failing_build_reports_its_real_error_line(kit: conftest.Kit) -> None:
    agent = kit.agent()
    dockerfile = f"FROM {kit.base_image}\nRUN echo 'boom: widget missing' >&2 && exit 3\n"
    await kit.send(agent, K.IMAGE_BUILD, _build("b-fail", _tag(), dockerfile=dockerfile))

    result = await kit.events.result("b-fail", timeout=60)
    assert result["ok"] is False
    assert "returned a non-zero code: 3" in result["error"]
    assert "boom: widget missing" in result["error"]


async def test_a_git_context_that_cannot_be_cloned_reports_gits_reason(kit: conftest.Kit, tmp_path: pathlib.Path) -> None:
    agent = kit.agent()
    await kit.send(agent, K.IMAGE_BUILD, _build("b-nogit", _tag(), git_url=f"file://{tmp_path}/no-such-repo"))
    result = await kit.events.result("b-nogit", timeout=30)
    assert result["ok"] is False
    assert result["error"].startswith("git clone failed:") and "does not appear to be a git repository" in result["error"]


async def test_a_build_past_its_deadline_is_stopped_and_says_so(kit: conftest.Kit) -> None:
    agent = kit.agent()
    command = _build("b-slow", _tag(), dockerfile=f"FROM {kit.base_image}\nRUN sleep 60\n").model_copy(update={"deadline_s": 2.0})
    await kit.send(agent, K.IMAGE_BUILD, command)

    result = await kit.events.result("b-slow", timeout=30)
    assert result["ok"] is False and "exceeded its deadline of 2s" in result["error"]
    # The daemon cancels the build when the agent hangs up: its RUN container goes away.
    await wait.eventually(lambda: _build_containers(kit, "sleep 60") == [], timeout=15, message="the build container is gone")


async def test_builds_beyond_the_concurrency_limit_wait_for_a_slot_and_say_their_place_in_line_as_it_moves_up(kit: conftest.Kit) -> None:
    agent = kit.agent(overrides={"builds": {"concurrency": 1}})
    names = ["b-one", "b-two", "b-three"]
    for name in names:
        await kit.send(
            agent, K.IMAGE_BUILD, _build(name, _tag(), dockerfile=f"FROM {kit.base_image}\nRUN sleep 1 && echo {name}-{secrets.token_hex(2)}\n")
        )

    results = [await kit.events.result(name, timeout=90) for name in names]
    assert all(r["ok"] for r in results), results

    def waiting(name: str) -> list[str]:
        return [e.payload["message"] for e in sorted(kit.events.of("job.progress", job_id=name, phase="queued"), key=lambda e: e.seq)]

    assert waiting("b-one") == []
    assert waiting("b-two") == ["waiting for a build slot, 1st in line"]
    assert waiting("b-three") == ["waiting for a build slot, 2nd in line", "waiting for a build slot, 1st in line"]
    first_done = kit.events.of("job.result", job_id="b-one")[0]
    second_building = kit.events.of("job.progress", job_id="b-two", phase="building")[0]
    assert second_building.seq > first_done.seq, "the second build started only after the first finished"
    moved_up = next(e for e in kit.events.of("job.progress", job_id="b-three", phase="queued") if e.payload["message"].endswith("1st in line"))
    first_output_end = max(e.seq for e in kit.events.of("job.log", job_id="b-one"))
    assert first_output_end < moved_up.seq < second_building.seq, "the third moved up as the first gave its slot to the second"
