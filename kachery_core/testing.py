"""Moved to `kachery_client.testing`; this old import path keeps working for one release."""

import importlib
import sys
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kachery_client.testing import *  # noqa: F403
else:
    warnings.warn(
        "kachery_core.testing moved to kachery_client.testing; import it from there",
        DeprecationWarning,
        stacklevel=2,
    )
    sys.modules[__name__] = importlib.import_module("kachery_client.testing")
