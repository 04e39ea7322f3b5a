"""HTTP models of webhook management shared by the self-service routes and the admin API.

They belong to the webhooks feature: :mod:`extapi_kit.webhooks.selfservice` uses them and
:mod:`extapi_kit.admin` imports them from here, never the reverse (DESIGN §2: webhooks and
routing never import admin).
"""

from __future__ import annotations

from pydantic import BaseModel

__all__ = ["ONCE_WARNING", "SecretOut"]

ONCE_WARNING = "This secret is shown once and cannot be retrieved again; store it now."


class SecretOut(BaseModel):
    """A rotated webhook signing secret, shown once."""

    secret: str
    warning: str = ONCE_WARNING
