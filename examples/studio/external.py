"""Re-export of :mod:`extapi_kit.examples.studio.external`, the file to read."""

from __future__ import annotations

from extapi_kit.examples.studio.external import *  # noqa: F403
from extapi_kit.examples.studio.external import __all__ as __all__
