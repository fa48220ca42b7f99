"""Secrets come from files (systemd LoadCredential=, Kubernetes Secrets mounted as files), not inline YAML."""

from __future__ import annotations

import pytest

from controlplane import settings as cp_settings
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
