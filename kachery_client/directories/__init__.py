"""Directories (`sha1dir://`): whole folders stored, read and materialized over any backend."""
