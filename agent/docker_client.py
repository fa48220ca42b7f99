"""The local Docker daemon, as async calls (the docker SDK is blocking: it runs in threads).

Errors::

    DockerError            the daemon refused or failed a request (message is Docker's)
    ├── DockerUnavailable  the daemon cannot be reached (transient: wait and retry)
    ├── NotFound           no such container/image
    └── Conflict           name already in use, image in use, …

docker SDK and requests exceptions are translated here, where they enter;
nothing above this module imports ``docker``. The low-level ``APIClient`` is
used throughout: the list endpoints answer in one request (the high-level
``containers.list`` inspects each container, which is far too slow for an
inventory of hundreds).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import socket
import threading
import typing

import docker
import docker.errors
import docker.utils
import docker.utils.socket
import requests.exceptions

from shared.domain import backoff

log = logging.getLogger(__name__)

T = typing.TypeVar("T")


class DockerError(Exception):
    """The daemon refused or failed a request."""


class DockerUnavailable(DockerError):
    """The daemon cannot be reached right now."""


class NotFound(DockerError):
    """No such container or image."""


class Conflict(DockerError):
    """The request conflicts with the daemon's state (name taken, image in use)."""


def translate(exc: BaseException) -> DockerError:
    if isinstance(exc, DockerError):
        return exc
    if isinstance(exc, docker.errors.NotFound):
        return NotFound(_explain(exc))
    if isinstance(exc, docker.errors.APIError):
        if exc.status_code == 409:
            return Conflict(_explain(exc))
        if exc.status_code is not None and exc.status_code >= 500 and "connection" in _explain(exc).lower():
            return DockerUnavailable(_explain(exc))
        return DockerError(_explain(exc))
    if isinstance(exc, docker.errors.DockerException):
        # Raised by the SDK itself when it cannot talk to the daemon at all.
        return DockerUnavailable(str(exc))
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError, FileNotFoundError)):
        return DockerUnavailable(f"cannot reach the Docker daemon: {exc.__class__.__name__}")
    return DockerError(f"{exc.__class__.__name__}: {exc}")


def _explain(exc: docker.errors.APIError) -> str:
    text = exc.explanation
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return str(text or exc)


class Docker:
    """Async facade over one daemon. Calls run in a dedicated thread pool."""

    def __init__(self, base_url: str | None, *, timeout: float, workers: int = 8) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="docker")
        self._client: docker.APIClient | None = None
        self._lock = threading.Lock()
        self._df_inflight: asyncio.Future[dict[str, typing.Any]] | None = None

    # -- plumbing ---------------------------------------------------------

    def client(self, *, timeout: float | None = None) -> docker.APIClient:
        """A connected APIClient (version negotiated once); a fresh one when timeout is given.

        Fresh clients serve long streams (builds, events) on their own
        connection; the caller closes them.
        """
        if timeout is None and self._client is not None:
            return self._client
        kwargs: dict[str, typing.Any] = {}
        if self.base_url:
            kwargs["base_url"] = self.base_url
        else:
            kwargs.update(docker.utils.kwargs_from_env())
        with self._lock:
            if timeout is None and self._client is not None:
                return self._client
            try:
                # version="auto" asks the daemon, so this fails while it is down;
                # the caller retries later instead of the agent failing to start.
                made = docker.APIClient(version="auto", timeout=int(timeout or self.timeout), **kwargs)
            except Exception as exc:
                raise translate(exc) from exc
            if timeout is None:
                self._client = made
            return made

    async def call(self, fn: typing.Callable[..., T], *args: typing.Any, **kwargs: typing.Any) -> T:
        """Run ``fn(client, *args, **kwargs)`` in the pool, translating errors."""
        loop = asyncio.get_running_loop()
        job = functools.partial(self._invoke, fn, *args, **kwargs)
        return await loop.run_in_executor(self._pool, job)

    def _invoke(self, fn: typing.Callable[..., T], *args: typing.Any, **kwargs: typing.Any) -> T:
        try:
            return fn(self.client(), *args, **kwargs)
        except Exception as exc:
            err = translate(exc)
            if isinstance(err, DockerUnavailable):
                # Drop the client: the daemon may come back with another API version.
                self._client = None
            raise err from exc

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            self._client.close()

    # -- calls --------------------------------------------------------------

    async def ping(self) -> bool:
        return await self.call(lambda c: bool(c.ping()))

    async def info(self) -> dict[str, typing.Any]:
        return await self.call(lambda c: c.info())

    async def inspect_container(self, ref: str) -> dict[str, typing.Any]:
        return await self.call(lambda c: c.inspect_container(ref))

    async def create_container(self, container: dict[str, typing.Any], host_config: dict[str, typing.Any]) -> str:
        def run(c: docker.APIClient) -> str:
            hc = c.create_host_config(**host_config)
            return c.create_container(host_config=hc, **container)["Id"]

        return await self.call(run)

    async def start(self, ref: str) -> None:
        await self.call(lambda c: c.start(ref))

    async def stop(self, ref: str, timeout: float) -> None:
        # The SDK extends the HTTP deadline by the stop grace period itself.
        await self.call(lambda c: c.stop(ref, timeout=round(timeout)))

    async def logs(self, ref: str, *, tail: int) -> str:
        """The last ``tail`` lines a container wrote (stdout and stderr)."""
        raw = await self.call(lambda c: c.logs(ref, stdout=True, stderr=True, tail=tail, timestamps=False))
        return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)

    # -- streams (exec and logs for agent/access_streams.py; each on its own connection) ----

    async def exec_open(self, ref: str, argv: list[str], *, tty: bool) -> tuple[str, typing.Any, docker.APIClient]:
        """Start ``argv`` in a running container: (exec id, its hijacked socket, the client to close afterwards)."""

        def run() -> tuple[str, typing.Any, docker.APIClient]:
            client = self.client(timeout=self.timeout)
            try:
                exec_id = client.exec_create(ref, argv, stdin=True, stdout=True, stderr=True, tty=tty)["Id"]
                sock = client.exec_start(exec_id, tty=tty, socket=True)
            except Exception as exc:
                client.close()
                raise translate(exc) from exc
            raw: typing.Any = getattr(sock, "_sock", sock)
            raw.settimeout(None)  # an idle interactive session is not an error; the caller bounds the session's time
            return exec_id, raw, client

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, run)

    @staticmethod
    def exec_frames(sock: typing.Any, *, tty: bool) -> typing.Iterator[tuple[int, bytes]]:
        """(1 stdout | 2 stderr, data) read from an exec socket until it ends (blocking: run it in a thread)."""
        try:
            yield from docker.utils.socket.frames_iter(sock, tty)
        except OSError:
            return

    async def exec_exit_code(self, exec_id: str) -> int | None:
        """The exec'd process's exit code; None while it still runs."""
        found = await self.call(lambda c: c.exec_inspect(exec_id))
        return None if found.get("Running") else found.get("ExitCode")

    async def exec_resize(self, exec_id: str, rows: int, cols: int) -> None:
        await self.call(lambda c: c.exec_resize(exec_id, height=rows, width=cols))

    async def logs_open(self, ref: str, *, follow: bool, tail: int | None, timeout: float) -> tuple[typing.Any, docker.APIClient]:
        """A container's output as a blocking iterator of chunks (and the client to close); ``close()`` on it ends a follow."""

        def run() -> tuple[typing.Any, docker.APIClient]:
            client = self.client(timeout=timeout)
            try:
                stream = client.logs(ref, stdout=True, stderr=True, stream=True, follow=follow, tail="all" if tail is None else tail)
            except Exception as exc:
                client.close()
                raise translate(exc) from exc
            return stream, client

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, run)

    async def remove_container(self, ref: str, *, force: bool) -> None:
        await self.call(lambda c: c.remove_container(ref, force=force, v=True))

    async def containers(self, *, labels: list[str], all: bool = True) -> list[dict[str, typing.Any]]:  # noqa: A002 - the SDK's keyword
        return await self.call(lambda c: c.containers(all=all, filters={"label": labels}))

    async def all_containers(self) -> list[dict[str, typing.Any]]:
        return await self.call(lambda c: c.containers(all=True))

    async def images(self, *, labels: list[str] | None = None) -> list[dict[str, typing.Any]]:
        filters = {"label": labels} if labels else None
        return await self.call(lambda c: c.images(filters=filters))

    async def inspect_image(self, ref: str) -> dict[str, typing.Any]:
        return await self.call(lambda c: c.inspect_image(ref))

    async def remove_image(self, ref: str) -> None:
        # Never forced: Docker itself then refuses to remove an image a container uses.
        await self.call(lambda c: c.remove_image(ref, force=False, noprune=False))

    async def prune_dangling_images(self) -> dict[str, typing.Any]:
        return await self.call(lambda c: c.prune_images(filters={"dangling": True}))

    async def prune_build_cache(self) -> dict[str, typing.Any]:
        return await self.call(lambda c: c.prune_builds())

    async def df(self) -> dict[str, typing.Any]:
        """Docker's disk usage figures.

        The daemon runs one disk-usage operation at a time and refuses another
        meanwhile ("a disk usage operation is already running"), so callers in
        this process (disk reports, cleanup) share the one in flight, and a
        refusal caused by another client of the daemon is retried briefly.
        """
        if self._df_inflight is None:
            self._df_inflight = asyncio.ensure_future(self._df_retrying())
            self._df_inflight.add_done_callback(lambda _: setattr(self, "_df_inflight", None))
        return await asyncio.shield(self._df_inflight)

    async def _df_retrying(self, attempts: int = 10) -> dict[str, typing.Any]:
        # Another client's df may take seconds on a full disk: wait longer each time, about 6 s in all.
        pauses = backoff.exponential(0.1, 1.0)
        for _ in range(attempts - 1):
            try:
                return await self.call(lambda c: c.df())
            except DockerError as exc:
                if "disk usage operation is already running" not in str(exc):
                    raise
            await asyncio.sleep(pauses.next())
        return await self.call(lambda c: c.df())

    async def pull(self, image: str) -> None:
        last = image.rsplit("/", 1)[-1]
        repo, tag = (image.rsplit(":", 1)) if ":" in last and "@" not in last else (image, None)
        await self.call(lambda c: c.pull(repo, tag=tag))


class _RecordingClient(docker.APIClient):
    """Remembers the HTTP response of the stream it opened, so the stream can be aborted."""

    response: typing.Any = None

    def _stream_helper(self, response, decode=False):  # SDK signature
        self.response = response
        return super()._stream_helper(response, decode=decode)


class BuildRun:
    """One image build on its own connection: iterate its chunks in a thread, abort from anywhere.

    Aborting shuts the socket down, which makes the daemon cancel the build
    (and remove its intermediate container), and makes the blocked iterator
    return at once.
    """

    def __init__(self, docker_: Docker, timeout: float, **build_kwargs: typing.Any) -> None:
        base = docker_.client()
        kwargs: dict[str, typing.Any] = {"base_url": docker_.base_url} if docker_.base_url else dict(docker.utils.kwargs_from_env())
        self._client = _RecordingClient(version=base.api_version, timeout=int(timeout) + 1, **kwargs)
        self._kwargs = dict(build_kwargs, timeout=int(timeout) + 1, decode=True)
        self.aborted = False

    def chunks(self) -> typing.Iterator[dict[str, typing.Any]]:
        try:
            yield from self._client.build(**self._kwargs)
        except Exception as exc:
            if self.aborted:
                return
            raise translate(exc) from exc
        finally:
            self._client.close()

    def abort(self) -> None:
        self.aborted = True
        response = self._client.response
        try:
            sock = response.raw.connection.sock if response is not None and response.raw.connection else None
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed: nothing left to abort
        self._client.close()
