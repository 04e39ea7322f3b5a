"""The admin API (``/admin/v1``) and the admin console (``/admin/console``).

:func:`create_admin_api` declares the admin surface on an :class:`~extapi_kit.routing.ExternalAPI`
(keys, webhooks, audit query, per-key usage), protected by keys holding the admin scope;
:func:`admin_app` builds it and serves the console page next to it.
"""

from __future__ import annotations

from extapi_kit.admin.api import ADMIN_SCOPE, AdminApp, admin_app, create_admin_api
from extapi_kit.admin.console import CONSOLE_CSP, ConsoleApp

__all__ = [
    "ADMIN_SCOPE",
    "CONSOLE_CSP",
    "AdminApp",
    "ConsoleApp",
    "admin_app",
    "create_admin_api",
]
