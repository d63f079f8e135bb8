"""Moved to `kachery_core.store.base`; this old import path keeps working for one release."""

import importlib
import sys
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kachery_core.store.base import *  # noqa: F403
else:
    warnings.warn(
        "kachery_core.storage moved to kachery_core.store.base; import it from there",
        DeprecationWarning,
        stacklevel=2,
    )
    sys.modules[__name__] = importlib.import_module("kachery_core.store.base")
