"""The Docker engine the harness provides is real: containers run, images build offline, loopback ports publish."""

from __future__ import annotations

import io
import pathlib
import secrets
import urllib.request

import docker
import pytest

from tests.harness import ports, wait

pytestmark = pytest.mark.docker

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_a_container_from_the_base_image_is_created_inspected_and_removed(docker_client, base_image, test_labels):
    container = docker_client.containers.create(base_image, ["sleep", "300"], labels=test_labels)
    try:
        container.start()
        container.reload()
        assert container.status == "running"
        assert container.labels == test_labels
        assert container.attrs["Config"]["Cmd"] == ["sleep", "300"]
        exit_code, output = container.exec_run(["sh", "-c", "echo $((6 * 7))"])
        assert (exit_code, output) == (0, b"42\n")
    finally:
        container.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(container.id)


def test_docker_build_from_the_base_image_works_offline(docker_client, base_image, test_run_id, test_labels):
    dockerfile = f'FROM {base_image}\nRUN mkdir -p /opt/a4c && echo built > /opt/a4c/proof\nCMD ["cat", "/opt/a4c/proof"]\n'
    tag = f"a4c-test/offline-build-{test_run_id}:1"
    image, _logs = docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, labels=test_labels)
    assert tag in image.tags
    output = docker_client.containers.run(tag, remove=True, labels=test_labels)
    assert output == b"built\n"


def test_a_port_published_on_loopback_is_reachable_from_the_tests(docker_client, base_image, test_labels):
    host_port = ports.free_port()
    script = "mkdir -p /www && echo published > /www/index.html && exec httpd -f -p 8080 -h /www"
    container = docker_client.containers.run(
        base_image, ["sh", "-c", script], detach=True, labels=test_labels, ports={"8080/tcp": ("127.0.0.1", host_port)}
    )
    try:

        def fetch() -> bytes:
            with urllib.request.urlopen(f"http://127.0.0.1:{host_port}/index.html", timeout=2) as response:
                return response.read()

        assert wait.wait_until(fetch, timeout=15, message="httpd in the container answers on the published port") == b"published\n"
        container.reload()
        assert container.ports["8080/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(host_port)}]
    finally:
        container.remove(force=True)


def _build(client: docker.DockerClient, base_image: str, tag: str) -> str:
    # A random label: never a cache hit, so the image is created now.
    dockerfile = f"FROM {base_image}\nLABEL a4c.test-nonce={secrets.token_hex(8)}\n"
    image_id = client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)[0].id
    assert image_id is not None
    return image_id


def test_what_a_session_leaves_behind_on_a_shared_daemon_is_removed_at_its_end_and_nothing_older(
    pytester, docker_client, docker_host, base_image, test_labels, test_run_id, monkeypatch
):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    # Someone else's workspace and test image on the same daemon, older than the
    # inner session: not the inner session's to remove.
    bystander = docker_client.containers.create(base_image, ["sleep", "300"], labels={**test_labels, "a4c.workspace": "bystander"})
    bystander_image = _build(docker_client, base_image, f"a4c-test/bystander-{test_run_id}:1")
    inner_tag = f"a4c-test/inner-{test_run_id}:1"
    try:
        pytester.makeconftest('pytest_plugins = ["tests.harness.fixtures_run", "tests.harness.fixtures_docker"]')
        ids = pytester.path / "ids.txt"
        pytester.makepyfile(
            test_leaky=f"""
import io
def test_leaves_containers_and_an_image_behind(docker_client, base_image, test_labels):
    with open({str(ids)!r}, "w") as f:
        for labels in (test_labels, {{"a4c.workspace": "w-1"}}):
            f.write(docker_client.containers.run(base_image, ["sleep", "300"], detach=True, labels=labels).id + "\\n")
    dockerfile = "FROM " + base_image + "\\nLABEL a4c.test-nonce={secrets.token_hex(8)}\\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag={inner_tag!r}, rm=True)
"""
        )

        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")

        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["*removed what tests left on Docker: container *"])
        for leaked in ids.read_text().split():
            with pytest.raises(docker.errors.NotFound):
                docker_client.containers.get(leaked)
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(inner_tag)
        assert docker_client.containers.get(bystander.id)
        assert docker_client.images.get(f"a4c-test/bystander-{test_run_id}:1").id == bystander_image, "an older test image survives"
    finally:
        bystander.remove(force=True)
        try:
            docker_client.images.remove(bystander_image, force=True)
        except docker.errors.ImageNotFound:
            pass  # the failure above already said so
