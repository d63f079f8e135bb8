"""What a channel's store did wrong, as one-line errors, and how often a request is tried.

Every boto3 failure becomes a one-line `KacheryError` naming the channel and the endpoint:
an unreachable or silent store after the channel's `connect_timeout` / `read_timeout` and
ATTEMPTS tries, a refusal (credentials), a missing bucket. One request therefore fails
within ATTEMPTS * (connect_timeout + read_timeout + EXPECT_WAIT) + RETRY_PAUSE * (1 + 2)
seconds. Kept apart from `bucket.py`, which says what is asked of the store, so that the
words of every failure and the retry bounds documented for operators are in one place.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator, TypeVar

from kachery_core.errors import (
    ConfigError,
    IntegrityError,
    KacheryError,
    NotFoundError,
    TransportError,
)

from .config import ChannelConfig

ATTEMPTS = 3
"""Tries per request, the first included. A download cut off midway resumes where it
stopped, and that counts as a try."""
RETRY_PAUSE = 0.5
"""Seconds before the second try; before the third, twice that."""
EXPECT_WAIT = 1.0
"""Seconds botocore waits for "100 Continue" before sending a PUT's body anyway: a silent
store costs each upload attempt this much on top of the timeouts."""
RETRIED_STATUSES = (500, 502, 503, 504)
RETRIED_CODES = ("SlowDown", "Throttling", "ThrottlingException", "RequestTimeout")

T = TypeVar("T")


class ChannelUnreachable(TransportError):
    """The channel's store did not answer (refused, timed out, dropped the connection)."""


class StoreBusy(TransportError):
    """The store answered with a failure that may pass (a 5xx status, throttling)."""


RETRIED = (ChannelUnreachable, StoreBusy)


def pause_before_retry(attempt: int) -> None:
    """Wait before try `attempt + 1`: RETRY_PAUSE, then twice that."""
    time.sleep(RETRY_PAUSE * attempt)


def call_with_retries(channel: ChannelConfig, what: str, request: Callable[[], T]) -> T:
    """`request()`, tried up to ATTEMPTS times while the store is unreachable or busy."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with store_errors(channel, what, attempt):
                return request()
        except RETRIED:
            if attempt == ATTEMPTS:
                raise
            pause_before_retry(attempt)
    raise AssertionError("the last attempt returns or raises")


@contextlib.contextmanager
def store_errors(channel: ChannelConfig, what: str, attempts: int = 1) -> Iterator[None]:
    """Turn boto3's exceptions into one-line errors naming the channel and endpoint.

    `attempts`: how many times the request has been tried, for the message.
    """
    from botocore import exceptions as bx

    checksum_error = getattr(bx, "FlexibleChecksumError", ())  # botocore >= 1.23
    try:
        yield
    except bx.ClientError as exc:
        raise client_error(channel, exc, what, attempts) from None
    except checksum_error as exc:  # the store's own checksum of the bytes did not match
        raise IntegrityError(f"{what}: {one_line(str(exc))}") from None
    except (bx.ConnectionError, bx.HTTPClientError, bx.IncompleteReadError) as exc:
        raise ChannelUnreachable(
            f"cannot reach the store of channel {channel.name!r} at "
            f"{channel.endpoint} while {what}: {_reason(exc, channel)}",
            f"is it up? (endpoint_url in {channel.source}; {tried(attempts)})",
        ) from None
    except (bx.NoCredentialsError, bx.PartialCredentialsError):
        raise ConfigError(
            f"no AWS credentials for channel {channel.name!r} ({channel.endpoint})",
            f"set aws_profile in {channel.source}, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY in the node's environment",
        ) from None
    except bx.BotoCoreError as exc:
        raise TransportError(
            f"the store of channel {channel.name!r} at {channel.endpoint} "
            f"failed while {what}: {one_line(str(exc))}"
        ) from None


def no_such_bucket(channel: ChannelConfig) -> ConfigError:
    return ConfigError(
        f"bucket {channel.bucket!r} of channel {channel.name!r} does not "
        f"exist at {channel.endpoint}",
        f"create it, or fix bucket in {channel.source}",
    )


def client_error(channel: ChannelConfig, exc: Any, what: str, attempts: int) -> KacheryError:
    """The error for a store's answer (a botocore `ClientError`), by its code and status."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    where = f"the store of channel {channel.name!r} at {channel.endpoint}"
    if code in ("NoSuchKey", "NotFound", "404") or (status == 404 and code != "NoSuchBucket"):
        return NotFoundError(f"{what}: no such object in channel {channel.name!r}")
    if code == "NoSuchBucket":
        return no_such_bucket(channel)
    if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return TransportError(
            f"{where} refused {what}: {code or status}",
            "check the node's AWS credentials (aws_profile, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY) and what they may do in the bucket",
        )
    message = one_line(str(error.get("Message", "")))
    text = f"{where} failed while {what}: {code or status} {message}".rstrip()
    if status in RETRIED_STATUSES or code in RETRIED_CODES:
        return StoreBusy(text, tried(attempts))
    return TransportError(text)


def _reason(exc: BaseException, channel: ChannelConfig) -> str:
    name = type(exc).__name__
    if name == "ConnectTimeoutError":
        return f"no connection within {channel.connect_timeout:g} s (connect_timeout)"
    if name == "ReadTimeoutError":
        return f"no answer within {channel.read_timeout:g} s (read_timeout)"
    if name == "EndpointConnectionError":
        return "could not connect"
    return f"connection lost ({name})"


def tried(attempts: int) -> str:
    return "tried once" if attempts == 1 else f"tried {attempts} times"


def one_line(text: str) -> str:
    return " ".join(text.split())[:300]
