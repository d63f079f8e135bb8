"""Moved to `kachery_core.settings.config`; this old import path keeps working for one release."""

import importlib
import sys
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kachery_core.settings.config import *  # noqa: F403
else:
    warnings.warn(
        "kachery_core.config moved to kachery_core.settings.config; import it from there",
        DeprecationWarning,
        stacklevel=2,
    )
    sys.modules[__name__] = importlib.import_module("kachery_core.settings.config")
