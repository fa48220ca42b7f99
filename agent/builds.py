"""Image builds: from an inline Dockerfile or a git context, with logs streamed back.

A build waits for a slot (``builds.concurrency`` run at once; the rest wait
first come, first served, and hear their place in line whenever it changes),
then runs under a deadline (the command's ``deadline_s``, capped by
``builds.deadline``). Output lines go back as ``job.log`` batches while it
runs; the result carries ``image_id``, ``digest`` and ``tag``; a failure's
error is the daemon's error line plus the failing step's last output (see
:mod:`agent.domain.builds`). Git contexts are cloned with the ``git`` CLI
into ``builds.work_dir`` (default ``<state_dir>/builds``) and removed after.
Built images carry ``a4c.managed``, ``a4c.image``, ``a4c.host`` and
``a4c.job`` labels, which is how inventory and cleanup recognise them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import io
import logging
import os
import pathlib
import shutil
import tarfile
import time
import typing

from agent import context as context_mod
from agent import docker_client, jobs, metrics
from agent.domain import builds as domain
from shared import messages

log = logging.getLogger(__name__)

_END = object()


@dataclasses.dataclass(eq=False)
class _Waiter:
    admitted: asyncio.Future[None]
    moved: typing.Callable[[int], None]


class Slots:
    """At most ``size`` holders at once; the others wait in a line, first come first served.

    A waiter is told its 1-based place in line when it joins and again each
    time it moves up (someone ahead got a slot or gave up waiting), so a
    build's progress can say how far it is from starting.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._holders = 0
        self._line: collections.deque[_Waiter] = collections.deque()

    @property
    def holders(self) -> int:
        """How many hold a slot now, counting one admitted whose task has not run yet."""
        return self._holders

    def resize(self, size: int) -> None:
        """A larger size admits waiters at once; a smaller one lets holders finish and admits nobody until under it."""
        self.size = size
        self._admit()

    @contextlib.asynccontextmanager
    async def hold(self, moved: typing.Callable[[int], None]) -> typing.AsyncIterator[None]:
        if self._holders < self.size and not self._line:
            self._holders += 1
        else:
            waiter = _Waiter(asyncio.get_running_loop().create_future(), moved)
            self._line.append(waiter)
            moved(len(self._line))
            try:
                await waiter.admitted
            except asyncio.CancelledError:
                if waiter.admitted.done() and not waiter.admitted.cancelled():
                    self._release()  # cancelled just as it was admitted: the slot goes to the next in line
                elif waiter in self._line:
                    place = self._line.index(waiter)
                    del self._line[place]
                    self._tell(from_place=place)
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        self._holders -= 1
        self._admit()

    def _admit(self) -> None:
        left = False
        while self._line and self._holders < self.size:
            waiter = self._line.popleft()
            left = True
            if waiter.admitted.cancelled():
                continue  # its task was cancelled and has not run its handler yet: nothing to hand over
            self._holders += 1
            waiter.admitted.set_result(None)
        if left:
            self._tell(from_place=0)

    def _tell(self, *, from_place: int) -> None:
        """Tell every waiter from this index on its (new) place in line."""
        for index, waiter in enumerate(self._line):
            if index >= from_place:
                waiter.moved(index + 1)


class Builder:
    def __init__(self, ctx: context_mod.Context) -> None:
        self.ctx = ctx
        self._slots = Slots(ctx.settings.builds.concurrency)

    def reconfigure(self) -> None:
        """Apply a reloaded concurrency, to the builds waiting now as well."""
        if self.ctx.settings.builds.concurrency != self._slots.size:
            self._slots.resize(self.ctx.settings.builds.concurrency)

    async def build(self, command: messages.BuildCommand, job_id: str) -> dict[str, typing.Any]:
        def moved(place: int) -> None:
            jobs.progress(self.ctx.publisher, job_id, "queued", domain.waiting_for_slot(place))

        async with self._slots.hold(moved):
            deadline = min(command.deadline_s, self.ctx.settings.builds.deadline)
            metrics.BUILDS_RUNNING.inc()
            workdir: pathlib.Path | None = None
            try:
                async with asyncio.timeout(deadline):
                    build_kwargs, workdir, commit = await self._context(command, job_id)
                    jobs.progress(self.ctx.publisher, job_id, "building", f"building {command.tag}")
                    return await self._run(command, job_id, build_kwargs, deadline, commit)
            except TimeoutError as exc:
                raise jobs.JobFailed(f"build exceeded its deadline of {deadline:.0f}s") from exc
            finally:
                metrics.BUILDS_RUNNING.dec()
                if workdir is not None:
                    await asyncio.to_thread(shutil.rmtree, workdir, True)

    # -- context --------------------------------------------------------------

    async def _context(self, command: messages.BuildCommand, job_id: str) -> tuple[dict[str, typing.Any], pathlib.Path | None, str | None]:
        ctx = command.context
        common = {
            "tag": command.tag,
            "labels": domain.image_labels(image_id=command.image_id, host_id=self.ctx.host_id, job_id=job_id),
            "buildargs": dict(command.build_args) or None,
            "rm": True,
            "forcerm": True,
            "pull": False,
        }
        if ctx.dockerfile is not None:
            return dict(common, fileobj=_inline_context(ctx.dockerfile), custom_context=True), None, None
        assert ctx.git_url is not None  # a BuildContext has exactly one source
        try:
            sub = domain.safe_subpath("context.git_path", ctx.git_path)
            dockerfile = domain.safe_subpath("context.dockerfile_path", ctx.dockerfile_path)
            domain.safe_ref(ctx.git_ref)
        except domain.ContextError as exc:
            raise jobs.JobFailed(str(exc)) from exc
        root = pathlib.Path(self.ctx.settings.builds.work_dir or os.path.join(self.ctx.settings.agent.state_dir, "builds"))
        workdir = root / f"{job_id}-{int(time.time() * 1000)}"
        jobs.progress(self.ctx.publisher, job_id, "cloning", f"cloning {ctx.git_url} at {ctx.git_ref}")
        await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
        try:
            await _git("clone", "--quiet", "--no-checkout", "--", ctx.git_url, str(workdir))
            commit = await _resolve(workdir, ctx.git_ref, ctx.git_url)
            await _git("-C", str(workdir), "checkout", "--quiet", "--detach", commit)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, workdir, True)
            raise
        context_dir = workdir / sub
        if not context_dir.is_dir():
            await asyncio.to_thread(shutil.rmtree, workdir, True)
            raise jobs.JobFailed(f"context.git_path: {ctx.git_path!r} is not a directory in {ctx.git_url} at {ctx.git_ref}")
        return dict(common, path=str(context_dir), dockerfile=dockerfile), workdir, commit

    # -- the build stream ---------------------------------------------------------

    async def _run(
        self, command: messages.BuildCommand, job_id: str, kwargs: dict[str, typing.Any], deadline: float, commit: str | None
    ) -> dict[str, typing.Any]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        run = docker_client.BuildRun(self.ctx.docker, deadline, **kwargs)

        def pump() -> None:
            try:
                for chunk in run.chunks():
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
                loop.call_soon_threadsafe(queue.put_nowait, _END)
            except BaseException as exc:  # noqa: BLE001 - handed to the loop
                loop.call_soon_threadsafe(queue.put_nowait, exc)

        stream = domain.BuildStream()
        batch: list[str] = []
        settings = self.ctx.settings.builds
        thread = loop.run_in_executor(None, pump)
        try:
            last_flush = loop.time()
            while True:
                try:
                    timeout = max(0.01, settings.log_batch_interval - (loop.time() - last_flush))
                    item = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    item = None
                if isinstance(item, BaseException):
                    raise item
                if item is _END:
                    batch.extend(stream.flush())
                    break
                if item is not None:
                    batch.extend(stream.feed(item))
                if batch and (len(batch) >= settings.log_batch_lines or loop.time() - last_flush >= settings.log_batch_interval):
                    self._send_logs(job_id, batch)
                    batch, last_flush = [], loop.time()
        finally:
            if batch:
                self._send_logs(job_id, batch)
            if not thread.done():
                run.abort()
        if stream.error is not None:
            raise jobs.JobFailed(domain.failure_text(stream.lines, stream.error))
        if stream.image_id is None and not await self._tag_exists(command.tag):
            # No error chunk and no image: the stream was cut short.
            raise jobs.JobFailed(domain.failure_text(stream.lines, "the build ended without producing an image"))
        image = await self.ctx.docker.inspect_image(stream.image_id or command.tag)
        digests = image.get("RepoDigests") or []
        result = {"image_id": image["Id"], "digest": digests[0] if digests else image["Id"], "tag": command.tag}
        if commit:
            result["git_commit"] = commit
        return result

    async def _tag_exists(self, tag: str) -> bool:
        try:
            await self.ctx.docker.inspect_image(tag)
            return True
        except docker_client.NotFound:
            return False

    def _send_logs(self, job_id: str, lines: list[str]) -> None:
        self.ctx.publisher.emit(messages.EventKind.JOB_LOG, messages.JobLog(job_id=job_id, lines=list(lines)))


def _inline_context(dockerfile: str) -> io.BytesIO:
    buf = io.BytesIO()
    data = dockerfile.encode()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


async def _resolve(workdir: pathlib.Path, ref: str, url: str) -> str:
    """The commit a ref names: a tag, a commit, HEAD, or a branch of the origin."""
    for candidate in (ref, f"origin/{ref}"):
        try:
            return (await _git("-C", str(workdir), "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}")).strip()
        except jobs.JobFailed:
            continue
    raise jobs.JobFailed(f"context.git_ref: {ref!r} is not a branch, tag or commit of {url}")


async def _git(*args: str) -> str:
    """Run git; a failure becomes the job's error with git's own last message."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true", LC_ALL="C")
    proc = await asyncio.create_subprocess_exec(
        "git", *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    try:
        out, err = await proc.communicate()
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if proc.returncode != 0:
        lines = [line.strip() for line in err.decode(errors="replace").splitlines() if line.strip()]
        # git's first fatal/error line is the cause; what follows is advice.
        causes = [line for line in lines if line.startswith(("fatal:", "error:"))]
        reason = (causes or lines or [f"exit status {proc.returncode}"])[0]
        raise jobs.JobFailed(f"git {args[0] if args[0] != '-C' else args[2]} failed: {reason}")
    return out.decode(errors="replace")
