"""Certificates for tests that need TLS: a private CA and a server certificate for 127.0.0.1, made with openssl."""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess


@dataclasses.dataclass(frozen=True)
class Certificates:
    ca: pathlib.Path  # the CA's certificate: what a client trusts
    server_pem: pathlib.Path  # key (PKCS#8) and certificate in one PEM file, as Kafka's PEM keystore wants
    server_cert: pathlib.Path
    server_key: pathlib.Path


def make(directory: pathlib.Path, *, name: str = "a4c-test") -> Certificates:
    """A fresh CA and a certificate for 127.0.0.1 / localhost signed by it (valid one day)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "1", "-subj", f"/CN={name} CA")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "1",
        "-extfile",
        str(ext),
    )
    pkcs8 = directory / "server.pk8"
    _openssl("pkcs8", "-topk8", "-nocrypt", "-in", str(key), "-out", str(pkcs8))
    pem = directory / "server.pem"
    pem.write_text(pkcs8.read_text() + cert.read_text())
    return Certificates(ca=ca, server_pem=pem, server_cert=cert, server_key=key)


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {done.stderr.strip()}")
