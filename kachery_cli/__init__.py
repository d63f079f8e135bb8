"""The `kachery-client` command line: parses arguments, dispatches to the active backend."""
