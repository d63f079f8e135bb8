"""Commands about the node and this client rather than files: `info`, `config`,
`backends`, `verify`, `generate-node-id` and `version`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Tuple

import click

from kachery_core import __version__

from .state import PROG, CliState, pass_state


@click.command("verify")
@click.argument("uris", nargs=-1, metavar="[URI]...")
@click.option(
    "--prune-stale", is_flag=True, help="Remove link records whose file is gone or changed."
)
@pass_state
def verify(state: CliState, uris: Tuple[str, ...], prune_stale: bool) -> None:
    """Re-hash objects and links in the active storage (all of them, or the URIs given).

    The active storage is the directory this client reads objects from: the storage
    directory (local), KACHERY_OFFLINE_STORAGE_DIR (offline), the node's storage
    directory (http), the client's cache or shared storage (remote, grpc). Damaged
    objects are moved to <dir>/quarantine/, so a later load fetches a good copy; stale
    links are reported. One line per finding on stdout; exit 1 when there were any.
    """
    from kachery_core.store.check import check_and_report

    sys.exit(check_and_report(state.client.local_store(), list(uris) or None, prune_stale))


@click.command("generate-node-id")
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to save the private key (default: beside the config file).",
)
@click.option("--force", is_flag=True, help="Replace an existing key file.")
@pass_state
def generate_node_id(state: CliState, key_file: Optional[Path], force: bool) -> None:
    """Create a node key pair, print the node ID, and expect that node from now on."""
    from kachery_core.protocol.node_key import generate_key_file
    from kachery_core.settings.config import set_config_file_value

    config = state.client.config
    key_path = key_file or config.config_file.parent / "node-key.pem"
    node_id = generate_key_file(key_path, overwrite=force)
    set_config_file_value(config.config_file, "expected_node_id", node_id)
    click.echo(
        f"private key saved to {key_path} "
        f"(start a node with: kachery-daemon start --node-key {key_path})",
        err=True,
    )
    click.echo(f"expected_node_id recorded in {config.config_file}", err=True)
    click.echo(node_id)


@click.command("version")
def version() -> None:
    """Print the version."""
    click.echo(f"{PROG} {__version__}")


@click.command("info")
@pass_state
def info(state: CliState) -> None:
    """Show the active backend, why it was chosen, the node ID and the storage directory."""
    client = state.client
    selection = client.selection
    node = client.node_info()
    rows = [
        ("backend", selection.name),
        ("chosen because", selection.reason),
        ("node id", node.node_id or "none (no node owns this storage)"),
        ("expected node id", client.config.expected_node_id or "any"),
        ("storage dir", node.storage_dir or "none"),
        (
            "config file",
            str(client.config.config_file)
            + ("" if client.config.config_file.exists() else " (absent)"),
        ),
    ]
    if node.address:
        rows.append(("node address", node.address))
    if node.daemon_version:
        rows.append(("node version", node.daemon_version))
    rows.extend(node.details.items())
    _print_table(rows)


@click.command("config")
@pass_state
def config(state: CliState) -> None:
    """Show every setting with its value and where the value came from."""
    from kachery_core.settings.config import SETTINGS

    cfg = state.client.config
    for label, path in (
        ("system config file", cfg.system_config_file),
        ("config file", cfg.config_file),
    ):
        if path is not None:
            click.echo(f"# {label}: {path}" + ("" if path.exists() else " (absent)"))
    width = max(len(k) for k in SETTINGS)
    for key, resolved in cfg.items():
        value = "(unset)" if resolved.value is None else str(resolved.value)
        if SETTINGS[key].secret and resolved.value is not None:
            value = value[:4] + "..." + f" ({len(value)} characters)"
        click.echo(f"{key:<{width}}  {value}  [{resolved.source}; env {SETTINGS[key].env}]")


@click.command("backends")
@click.option("--debug", "tracebacks", is_flag=True, help="Show broken plugins' tracebacks.")
@pass_state
def backends(state: CliState, tracebacks: bool) -> None:
    """List installed backends and the package that provides each, and broken plugins."""
    from kachery_client.backends.registry import get_registry

    registry = get_registry()
    rows = [
        (spec.name, f"{spec.package} {spec.version}  {spec.summary}")
        for spec in (registry.backends[n] for n in registry.names())
    ]
    rows.extend((name, f"BROKEN: {reason}") for name, reason in sorted(registry.broken.items()))
    rows.extend((name, f"REFUSED: {reason}") for name, reason in registry.refused)
    _print_table(rows)
    if tracebacks or state.debug:
        for name, text in sorted(registry.tracebacks.items()):
            click.echo(f"\n{name} is broken because:\n{text.rstrip()}", err=True)


def _print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")
