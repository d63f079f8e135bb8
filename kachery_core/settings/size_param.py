"""Sizes on either program's command line (`kachery-client gc --max-size`, `kachery-daemon
start --max-cache-size`), parsed by the settings' one size parser so that a flag takes
what the config key and the environment variable take."""

from __future__ import annotations

from typing import Any, Optional

import click

from .parsers import parse_size


class SizeParam(click.ParamType):
    """A size: bytes, or with a unit (50GiB, 500MB); a usage error names a bad one."""

    name = "size"

    def convert(
        self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]
    ) -> int:
        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(f"{value!r}: {exc}", param, ctx)


SIZE = SizeParam()
