"""Changing a config file (`kachery-client generate-node-id` writes `expected_node_id`).

Kept apart from reading: resolving settings never writes, and this is the one writer.
"""

from __future__ import annotations

from pathlib import Path

from kachery_core.atomic_file import write_atomically
from kachery_core.errors import ConfigError
from kachery_core.settings.files import read_config_file
from kachery_core.settings.schema import SETTINGS, canonical_key


def set_config_file_value(path: Path, key: str, value: str) -> None:
    """Set a top-level string setting in a TOML config file, keeping everything else as it is.

    The new text is parsed back and must hold exactly the old settings plus this one,
    so a file this cannot edit cleanly is left alone (with an error) rather than damaged.
    """
    from kachery_core.settings.toml import basic_string, set_top_level_string

    setting = SETTINGS[canonical_key(key)]
    setting.parse(value)
    before = read_config_file(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    spellings = [setting.alt_key] if setting.alt_key else []
    new_text = set_top_level_string(text, setting.key, value, drop=spellings)
    expected = {k: v for k, v in before.items() if k not in spellings}
    expected[setting.key] = value
    path.parent.mkdir(parents=True, exist_ok=True)

    def unchanged_but_for_the_new_value(staging: Path) -> None:
        # never replace a working file with a broken one
        if read_config_file(staging) != expected:
            raise ConfigError(
                f"cannot update {path} without changing other settings",
                f"add this line at its top by hand: {setting.key} = {basic_string(value)}",
            )

    write_atomically(
        path, new_text.encode("utf-8"), mode=None, check=unchanged_but_for_the_new_value
    )
