"""Node identity: an Ed25519 key pair whose public key, in hex, is the node ID.

`generate-node-id` writes the private key (PEM, mode 0600) for `kachery-daemon start
--node-key` and records the node ID as the one the client expects. Signing with the key
is how a node proves it is that node.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kachery_core.atomic_file import write_atomically
from kachery_core.errors import ConfigError, InvalidInputError, NodeIdMismatchError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def generate_key_file(path: Path, overwrite: bool = False) -> str:
    """Create a new private key at `path` (mode 0600); return its node ID."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if path.exists() and not overwrite:
        raise InvalidInputError(
            f"a node key already exists at {path}",
            "pass --force to replace it (the old node ID is then lost), or choose --key-file",
        )
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, pem, mode=0o600)
    return node_id_of(key)


def load_key_file(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigError(f"node key file {path} does not exist") from None
    except ValueError as exc:
        raise ConfigError(f"node key file {path} is not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"node key file {path} does not hold an Ed25519 key")
    return key


def node_id_of(key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def verify_signature(node_id: str, message: bytes, signature_hex: str) -> bool:
    """True when `signature_hex` is the node's Ed25519 signature of `message`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(node_id))
        public.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def check_node_id(expected: str | None, actual: str | None, where: str, config_source: str) -> None:
    """Refuse a node that is not the one the configuration expects."""
    if expected and actual and expected != actual:
        raise NodeIdMismatchError(
            f"node ID mismatch: expected {expected} ({config_source}) but {where} reports {actual}",
            "connect to the right node, or change expected_node_id in that config",
        )
