"""Re-export of :mod:`extapi_kit.examples.studio._runtime`, the file to read."""

from __future__ import annotations

from extapi_kit.examples.studio._runtime import *  # noqa: F403
from extapi_kit.examples.studio._runtime import __all__ as __all__
