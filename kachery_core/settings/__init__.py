"""Where settings come from: the config files, the environment, profiles and paths.

`config.resolve_config()` is the one place a setting is resolved; nothing else reads
`KACHERY_*` variables or config files. `config` re-exports what its parts (`schema`,
`parsers`, `files`, `write`) define, so `kachery_core.settings.config` is the one import path.
"""
