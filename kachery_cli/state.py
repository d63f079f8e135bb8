"""What every `kachery-client` command shares: the global options and the `Client` they
configure, the channel-name parameter type, and progress bars that always close.

The command modules import this one, and `main` imports them to add their commands to the
group, so no command module imports `main`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Optional

import click

from kachery_core.progress import batch_progress_bar, progress_bar

if TYPE_CHECKING:
    from kachery_client.client import Client

PROG = "kachery-client"


class CliState:
    """The global options, and the client they configure (made on first use)."""

    def __init__(self, backend: Optional[str], profile: Optional[str], debug: bool) -> None:
        self.backend = backend
        self.profile = profile
        self.debug = debug
        self.channel: Optional[str] = None
        """--channel of the command, set before the client is made."""
        self._client: Optional[Client] = None

    @property
    def client(self) -> Client:
        if self._client is None:
            from kachery_client.client import Client

            self._client = Client(
                self.backend, profile=self.profile, channel=self.channel, _source="command line"
            )
        return self._client


pass_state = click.make_pass_decorator(CliState)


class ReaderGone(Exception):
    """stdout's reader went away (`kachery-client cat-file URI | head -c 10`): not an error.

    Not an `OSError`, because click ends the program with exit code 1 on any EPIPE that
    reaches it; `main` turns this into exit 0.
    """


class Interrupted(Exception):
    """Ctrl-C during a command. Not a `KeyboardInterrupt`, which click would turn into
    `Abort` after printing a blank line; `main` exits 130 with one line."""


class ChannelName(click.ParamType):
    """A channel name, checked by the one rule for them before the command does any work."""

    name = "channel"

    def convert(
        self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]
    ) -> str:
        from kachery_client.client import InvalidChannelNameError, check_channel_name

        try:
            return check_channel_name(value)
        except InvalidChannelNameError as exc:
            self.fail(exc.message, param, ctx)


CHANNEL = ChannelName()

fetch_channel_option = click.option(
    "--channel",
    type=CHANNEL,
    metavar="NAME",
    help="If the node lacks the file, it fetches it from this channel (default: KACHERY_CHANNEL).",
)
"""`--channel` of the commands that load a file (load-file, cat-file)."""


@contextmanager
def progress(label: str, size: Optional[int] = None) -> Iterator[Any]:
    """A progress bar (None off a terminal), closed however the work ends."""
    bar = progress_bar(label, size)
    try:
        yield bar
    finally:
        if bar:
            bar.close()


@contextmanager
def tree_progress(label: str, files: Optional[int], size: Optional[int]) -> Iterator[Any]:
    """A files-and-bytes progress bar (None off a terminal), closed however the work ends."""
    bar = batch_progress_bar(label, files, size)
    try:
        yield bar
    finally:
        if bar:
            bar.close()
