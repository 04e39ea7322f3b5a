"""Re-export of :mod:`extapi_kit.examples.studio.internal`, the file to read."""

from __future__ import annotations

from extapi_kit.examples.studio.internal import *  # noqa: F403
from extapi_kit.examples.studio.internal import __all__ as __all__
