"""Re-export of :mod:`extapi_kit.examples.studio.app`, the file to read."""

from __future__ import annotations

from extapi_kit.examples.studio.app import *  # noqa: F403
from extapi_kit.examples.studio.app import __all__ as __all__
