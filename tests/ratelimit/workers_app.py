"""An app for the multi-worker test: memory storage, served by ``uvicorn --workers 2``."""

from __future__ import annotations

from extapi_kit.middleware.rate_limit import RateLimitMiddleware
from tests.ratelimit.helpers import ok_app

app = RateLimitMiddleware(ok_app, read="5/minute")
