"""``python -m extapi_kit.cli``."""

from __future__ import annotations

import sys

from extapi_kit.cli import main

sys.exit(main())
