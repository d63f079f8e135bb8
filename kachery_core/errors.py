"""The exceptions kachery raises.

Every error a user can cause is a `KacheryError`: its message is one line that names
the bad value, and `hint` says what to do. The CLI prints `Error: <message>` and exits
with `exit_code`; anything else escaping is a bug and is reported as one.
"""

from __future__ import annotations

from typing import List, Optional


class KacheryError(Exception):
    """Base class of the errors users can act on."""

    exit_code = 1

    def __init__(self, message: str, hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}; {self.hint}"
        return self.message


class InvalidUriError(KacheryError, ValueError):
    """Text that is not a well-formed kachery URI."""


class ConfigError(KacheryError):
    """A setting, config file or profile has an invalid value."""


class NotFoundError(KacheryError, FileNotFoundError):
    """The requested object is not available from the active backend."""


class StaleLinkError(NotFoundError):
    """A linked file changed after `link-file`, so its bytes no longer match the hash."""


class InvalidInputError(KacheryError):
    """A local file or argument that cannot be used (missing, a directory, unreadable)."""


class FolderProblemsError(InvalidInputError):
    """Entries of a folder that cannot be stored; `problems` has one line for each."""

    def __init__(self, root: object, problems: List[str]) -> None:
        count = len(problems)
        super().__init__(
            f"{count} entr{'y' if count == 1 else 'ies'} of {str(root)!r} cannot be stored "
            f"({problems[0]}{'; ...' if count > 1 else ''})",
            "fix or remove them, or pass --skip-errors (skip_errors=True) to leave them out",
        )
        self.problems = problems


TreeProblemsError = FolderProblemsError
"""The earlier name of `FolderProblemsError`."""


class FormatError(KacheryError, ValueError):
    """An object's bytes are not in the format asked for (`load_json` of a PNG, say); the
    message names the URI and what the bytes look like."""


class IntegrityError(KacheryError):
    """Bytes did not hash to what they were supposed to."""


class UnsupportedOperation(KacheryError):
    """The active backend cannot do this (for example, storing while offline)."""

    def __init__(self, backend: str, operation: str, hint: Optional[str] = None) -> None:
        super().__init__(f"the '{backend}' backend does not support {operation}", hint)
        self.backend = backend
        self.operation = operation


class BackendError(KacheryError):
    """A backend is unknown, broken, or its dependencies are missing."""


class NodeIdMismatchError(KacheryError):
    """The node answering is not the node this client was configured to expect."""


class TransportError(KacheryError):
    """Talking to a node failed (connection refused, dropped, timed out, refused auth)."""
