"""The standalone sync worker's listener: /healthz tells a dead loop, /metrics keeps the API's token rule."""

from __future__ import annotations

import asyncio
import pathlib

import aiohttp
import pytest

from controlplane import settings as cp_settings
from controlplane.search import sync_listener
from tests.harness import ports, wait


def _settings(port: int, token_file: pathlib.Path | None = None) -> cp_settings.Settings:
    return cp_settings.Settings.model_validate(
        {
            "http": {"metrics_token_file": str(token_file) if token_file else None},
            "search": {"elasticsearch_url": "http://127.0.0.1:9", "sync_in_process": False, "sync_metrics_port": port},
        }
    )


async def test_healthz_follows_the_sync_loop_and_metrics_want_the_token(tmp_path: pathlib.Path) -> None:
    token = tmp_path / "metrics.token"
    token.write_text("s3cret\n")
    port = ports.free_port()
    loop_running = True
    runner = await sync_listener.start(_settings(port, token), alive=lambda: loop_running)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as response:
                assert (response.status, await response.json()) == (200, {"status": "ok"})
            async with http.get(f"{base}/metrics") as response:
                assert response.status == 401
                assert "http.metrics_token_file" in (await response.json())["detail"]
            async with http.get(f"{base}/metrics", headers={"Authorization": "Bearer wrong"}) as response:
                assert response.status == 401
            async with http.get(f"{base}/metrics", headers={"Authorization": "Bearer s3cret"}) as response:
                assert response.status == 200
                assert "# TYPE a4c_search_sync_lag_messages gauge" in await response.text()
            loop_running = False
            async with http.get(f"{base}/healthz") as response:
                assert response.status == 503
                assert (await response.json())["status"] == "stopped"
    finally:
        await runner.cleanup()


async def test_a_taken_port_is_an_error_naming_the_settings() -> None:
    port = ports.free_port()
    first = await sync_listener.start(_settings(port), alive=lambda: True)
    try:
        with pytest.raises(sync_listener.ListenError, match=r"search\.sync_metrics_host/sync_metrics_port"):
            await sync_listener.start(_settings(port), alive=lambda: True)
    finally:
        await first.cleanup()


async def test_the_watchdog_pings_while_the_loop_runs_and_stops_when_it_ends() -> None:
    pings: list[int] = []
    running = True
    stopping = asyncio.Event()
    task = asyncio.create_task(sync_listener.watchdog(0.01, lambda: running, stopping, lambda: pings.append(1)))
    await wait.eventually(lambda: len(pings) >= 3, timeout=10, message="three pings while the loop runs")
    running = False
    async with asyncio.timeout(10):
        await task  # ends by itself: no more pings once the loop is dead
    count = len(pings)
    assert task.done() and count >= 3
