"""Secrets come from files (systemd LoadCredential=, Kubernetes Secrets mounted as files), not inline YAML."""

from __future__ import annotations

import base64

import pytest
from aiohttp import web

from controlplane import settings as cp_settings
from controlplane.search import client as search_client
from shared import config


def test_the_database_password_comes_from_its_file_into_the_primary_and_password_less_replicas(tmp_path):
    secret = tmp_path / "db-password"
    secret.write_text("p@ss:w/rd\n")
    settings = cp_settings.load(
        environ={},
        **{
            "database.url": "postgresql://a4c@db1:5432/a4c",
            "database.replica_urls": ["postgresql://a4c@db2:5432/a4c", "postgresql://reader:own@db3:5432/a4c"],
            "database.password_file": str(secret),
        },
    )
    assert settings.database.url == "postgresql://a4c:p%40ss%3Aw%2Frd@db1:5432/a4c"
    assert settings.database.replica_urls == ["postgresql://a4c:p%40ss%3Aw%2Frd@db2:5432/a4c", "postgresql://reader:own@db3:5432/a4c"]


def test_a_missing_password_file_is_an_error_naming_the_key(tmp_path):
    with pytest.raises(config.ConfigError, match="password_file"):
        cp_settings.load(environ={}, **{"database.password_file": str(tmp_path / "absent")})


@pytest.fixture
async def elasticsearch_recorder():
    """A local HTTP server that answers like Elasticsearch and keeps each request's Authorization header."""
    seen: list[str | None] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"cluster_name": "recorder"}, headers={"X-Elastic-Product": "Elasticsearch"})

    app = web.Application()
    app.router.add_get("/", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield port, seen
    finally:
        await runner.cleanup()


async def _info(settings: cp_settings.Settings) -> None:
    client = search_client.create(settings.search)
    try:
        await client.info()
    finally:
        await client.close()


async def test_the_elasticsearch_api_key_comes_from_its_file(tmp_path, elasticsearch_recorder):
    port, seen = elasticsearch_recorder
    key = tmp_path / "es-api-key"
    key.write_text("bXkta2V5OnNlY3JldA==\n")
    settings = cp_settings.load(environ={}, **{"search.elasticsearch_url": f"http://127.0.0.1:{port}", "search.api_key_file": str(key)})
    await _info(settings)
    assert seen == ["ApiKey bXkta2V5OnNlY3JldA=="]


async def test_the_elasticsearch_password_comes_from_its_file_for_the_user_in_the_url(tmp_path, elasticsearch_recorder):
    port, seen = elasticsearch_recorder
    secret = tmp_path / "es-password"
    secret.write_text("s3cret:pw\n")
    settings = cp_settings.load(environ={}, **{"search.elasticsearch_url": f"http://a4c@127.0.0.1:{port}", "search.password_file": str(secret)})
    await _info(settings)
    assert seen == ["Basic " + base64.b64encode(b"a4c:s3cret:pw").decode()]


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"search.elasticsearch_url": "http://a4c@es:9200", "search.password_file": "/nonexistent/es-password"}, "search.password_file"),
        ({"search.elasticsearch_url": "http://es:9200", "search.api_key_file": "/nonexistent/es-key"}, "search.api_key_file"),
        ({"search.elasticsearch_url": "http://es:9200", "search.password_file": "/etc/hostname"}, "needs a user"),
    ],
)
def test_an_unusable_elasticsearch_secret_is_an_error_naming_the_key(given, named):
    with pytest.raises(config.ConfigError, match=named):
        cp_settings.load(environ={}, **given)


def test_the_database_password_goes_into_a_unix_socket_url_too(tmp_path):
    secret = tmp_path / "db-password"
    secret.write_text("s3cret\n")
    settings = cp_settings.load(
        environ={}, **{"database.url": "postgresql://a4c@/a4c?host=/var/run/postgresql", "database.password_file": str(secret)}
    )
    assert settings.database.url == "postgresql://a4c:s3cret@/a4c?host=/var/run/postgresql"
