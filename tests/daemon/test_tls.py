"""A node serving HTTPS itself (--tls-cert/--tls-key), and clients that verify it."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Tuple

import pytest


def _self_signed(directory: Path) -> Tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with `cryptography` (a dependency)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kachery test node")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "node-cert.pem", directory / "node-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_node(make_node, tmp_path: Path):
    cert, key = _self_signed(tmp_path)
    node = make_node("--tls-cert", str(cert), "--tls-key", str(key))
    node.cert = cert
    return node


def test_remote_client_over_https(tls_node, cli, kenv, tmp_path: Path) -> None:
    made = cli(
        "token",
        "create",
        "--label",
        "tls",
        "--storage-dir",
        str(tls_node.storage_dir),
        program="kachery-daemon",
    )
    env = dict(
        kenv,
        KACHERY_TRANSPORT="remote",
        KACHERY_DAEMON_HOST="127.0.0.1",
        KACHERY_DAEMON_PORT=str(tls_node.port),
        KACHERY_DAEMON_TLS="1",
        KACHERY_TLS_CA_FILE=str(tls_node.cert),
        KACHERY_STORAGE_DIR=str(tmp_path / "cache"),
        KACHERY_AUTH_TOKEN=made.stdout.strip(),
    )
    src = tmp_path / "secret.txt"
    src.write_text("over TLS")
    stored = cli("store-file", str(src), env=env)
    assert stored.returncode == 0, stored
    assert cli("cat-file", stored.stdout.strip(), env=env).stdout == "over TLS"
    info = cli("info", env=env)
    assert f"https://127.0.0.1:{tls_node.port}" in info.stdout

    untrusted = cli(
        "store-file", str(src), env={k: v for k, v in env.items() if k != "KACHERY_TLS_CA_FILE"}
    )
    assert untrusted.returncode == 1
    assert "certificate is trusted" in untrusted.stderr and untrusted.stderr.count("\n") == 1

    plain = cli("store-file", str(src), env=dict(env, KACHERY_DAEMON_TLS="0"))
    assert plain.returncode == 1 and plain.stderr.startswith("Error: no kachery node answers")


def test_daemon_info_and_bad_key(tls_node, cli, kenv, make_node, tmp_path: Path) -> None:
    info = cli("info", "--storage-dir", str(tls_node.storage_dir), program="kachery-daemon")
    assert "running      yes" in info.stdout and "https://" in info.stdout
    wrong = tmp_path / "wrong.pem"
    wrong.write_text("not a key")
    started = cli(
        "start",
        "--port",
        "1",
        "--storage-dir",
        str(tmp_path / "other"),
        "--tls-cert",
        str(tls_node.cert),
        "--tls-key",
        str(wrong),
        program="kachery-daemon",
    )
    assert started.returncode == 1
    assert "cannot use --tls-cert" in started.stderr and started.stderr.count("\n") == 1
    half = cli("start", "--tls-cert", str(tls_node.cert), program="kachery-daemon")
    assert half.returncode == 2 and "--tls-key" in half.stderr


def _tls_env(kenv, node, **extra: str) -> dict:
    """Automatic selection (no backend named) towards `node`, whose storage is on this machine."""
    env = dict(
        kenv,
        KACHERY_DAEMON_HOST="127.0.0.1",  # the name in the test certificate
        KACHERY_DAEMON_PORT=str(node.port),
        KACHERY_DAEMON_TLS="1",
        KACHERY_STORAGE_DIR=str(node.storage_dir),
    )
    env.update(extra)
    return env


def test_automatic_selection_finds_a_tls_node(tls_node, cli, kenv, tmp_path: Path) -> None:
    env = _tls_env(kenv, tls_node, KACHERY_TLS_CA_FILE=str(tls_node.cert))
    info = cli("info", env=env)
    assert info.returncode == 0, info
    assert info.stdout.split()[:2] == ["backend", "http"], info
    assert f"a node answered the probe over HTTPS at https://127.0.0.1:{tls_node.port}" in (
        info.stdout
    )
    src = tmp_path / "to-node.txt"
    src.write_text("to the TLS node")
    stored = cli("store-file", str(src), env=env)
    assert stored.returncode == 0, stored
    assert cli("cat-file", stored.stdout.strip(), env=env).stdout == "to the TLS node"
    assert list((tls_node.storage_dir / "sha1").rglob("*"))  # in the node's storage ...
    assert not (Path(kenv["KACHERY_STORAGE_DIR"]) / "sha1").exists()  # ... not the embedded


def test_untrusted_certificate_is_an_error_not_a_fallback(
    tls_node, cli, kenv, tmp_path: Path
) -> None:
    env = _tls_env(kenv, tls_node, KACHERY_STORAGE_DIR=kenv["KACHERY_STORAGE_DIR"])
    src = tmp_path / "nowhere.txt"
    src.write_text("should not be stored anywhere")
    for args in (("info",), ("store-file", str(src))):
        result = cli(*args, env=env)
        assert result.returncode == 1, result
        assert result.stdout == "" and result.stderr.count("\n") == 1, result
        assert result.stderr.startswith("Error: daemon_tls is set")
        assert "certificate" in result.stderr and "KACHERY_TLS_CA_FILE" in result.stderr
    assert not (Path(kenv["KACHERY_STORAGE_DIR"]) / "sha1").exists()


def test_tls_asked_of_a_plain_node_is_an_error(node, cli, kenv, tmp_path: Path) -> None:
    env = _tls_env(kenv, node)
    result = cli("info", env=env)
    assert result.returncode == 1, result
    assert "does not speak TLS" in result.stderr and result.stderr.count("\n") == 1, result
    from conftest import free_port

    nothing = cli("info", env=dict(env, KACHERY_DAEMON_PORT=str(free_port())))
    assert nothing.returncode == 0, nothing  # nothing listens: the embedded storage, as before
    assert "no node answered" in nothing.stdout
