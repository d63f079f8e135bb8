"""How a gRPC call of the node ends when it fails: a status code that fits the error
(`status_code`), a one-line message and the error type in the trailing metadata
`wire.ERROR_TYPE_METADATA` (`abort`); an unexpected exception is logged to stderr and
answered INTERNAL. A stream whose client reads nothing ends without waiting to send
its status (`end_behind_unread_answer`)."""

from __future__ import annotations

from typing import Optional, Tuple, Type

import grpc
from grpc import aio

from kachery_core.errors import KacheryError, NotFoundError
from kachery_core.protocol import wire

from .grpc_limits import StreamStalled
from .node import NoSpaceError, report_unexpected

REFUSED = "refused"
"""The error type of a call without a valid credential."""


STATUS_CODES: Tuple[Tuple[Type[BaseException], grpc.StatusCode], ...] = (
    (NoSpaceError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (StreamStalled, grpc.StatusCode.DEADLINE_EXCEEDED),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (KacheryError, grpc.StatusCode.INVALID_ARGUMENT),  # InvalidInputError, IntegrityError, ...
    (UnicodeError, grpc.StatusCode.INVALID_ARGUMENT),  # a lone surrogate in *_json text
    (RecursionError, grpc.StatusCode.INVALID_ARGUMENT),  # a value nested too deeply
)
"""Exception -> gRPC status, first match wins; anything else is a bug, answered INTERNAL."""


class Refused(Exception):
    """The call lacks a valid credential."""

    def __init__(self, code: grpc.StatusCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def status_code(exc: BaseException) -> Optional[grpc.StatusCode]:
    if isinstance(exc, Refused):
        return exc.code
    for cls, code in STATUS_CODES:
        if isinstance(exc, cls):
            return code
    return None


async def abort(context: aio.ServicerContext, exc: Exception) -> None:
    """End the call with the status, one-line message and error type that fit `exc` (raises)."""
    code = status_code(exc)
    if code is None:
        code, details, kind = (
            grpc.StatusCode.INTERNAL,
            report_unexpected(exc, "a gRPC call"),
            "error",
        )
    else:
        details = wire.one_line(str(exc))
        kind = REFUSED if isinstance(exc, Refused) else wire.error_type(exc)
    await context.abort(code, details, trailing_metadata=((wire.ERROR_TYPE_METADATA, kind),))


class AnswerUnread(StreamStalled):
    """The client read none of a stream's answers for the write timeout."""


def end_behind_unread_answer(context: aio.ServicerContext, exc: AnswerUnread) -> None:
    """End the call's handler with `exc`'s status without waiting to send it: `abort` would
    wait behind the answer the client does not read. The client gets the status if it
    reads on; its file is closed now."""
    context.set_code(grpc.StatusCode.DEADLINE_EXCEEDED)
    context.set_details(wire.one_line(str(exc)))
    context.set_trailing_metadata(((wire.ERROR_TYPE_METADATA, wire.error_type(exc)),))
