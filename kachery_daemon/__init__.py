"""The kachery node: `kachery-daemon`."""
