"""A machine without Java or Maven gets an error naming what to install, never a silent stand-in."""

from __future__ import annotations

import pytest

from tests.harness import jvm


def test_no_java_names_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(jvm.JvmError, match="openjdk-17-jre-headless"):
        jvm.java()


def test_no_maven_names_the_debian_package_when_the_jars_are_not_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(jvm, "CACHE", tmp_path / "cache")
    with pytest.raises(jvm.JvmError, match="install Debian's maven"):
        jvm.fetch("kafka")


def test_cached_jars_need_neither_maven_nor_the_network(monkeypatch, tmp_path):
    lib = jvm.fetch("kafka")  # fills the cache (the suite's brokers did already)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert jvm.fetch("kafka") == lib
    assert any(p.name.startswith("kafka_2.13-") for p in lib.iterdir())
