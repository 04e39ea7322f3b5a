"""``extapi-kit keys show <id> --activity``: read a key's analytics and print them.

The activity store is ``--activity-store URL``, else ``$EXTAPI_KIT_ACTIVITY_STORE``, else the key
store (the activity table is prefixed, so it can share the key store's file).
"""

from __future__ import annotations

import os
from typing import Any

from extapi_kit.cli._output import safe

__all__ = ["activity_lines", "activity_store_url", "read_activity"]

DEFAULT_STORE = "sqlite:///extapi-kit.db"


def activity_store_url(explicit: str | None, keys_url: str | None) -> str:
    """Return the activity store URL the CLI reads.

    Args:
        explicit: ``--activity-store``, if given.
        keys_url: the key store URL, if given.
    """
    return str(
        explicit
        or os.environ.get("EXTAPI_KIT_ACTIVITY_STORE")
        or keys_url
        or os.environ.get("EXTAPI_KIT_STORE")
        or DEFAULT_STORE
    )


async def read_activity(url: str, key_id: str) -> dict[str, Any]:
    """Return a key's analytics from the store at ``url``.

    Args:
        url: the activity store URL.
        key_id: the key.
    """
    from extapi_kit.analytics import KeyActivity

    activity = KeyActivity(url)
    try:
        return await activity.get(key_id)
    finally:
        await activity.aclose()


def activity_lines(data: dict[str, Any]) -> list[str]:
    """Return the analytics as aligned text lines (values from clients are escaped).

    Args:
        data: :meth:`KeyActivity.get`'s answer.
    """
    status = " ".join(f"{name} {n}" for name, n in data["status"].items())
    lines = [
        f"{'activity':20} last {data['window_days']} days (since {data['since']})",
        f"{'requests':20} {data['requests']} ({status}), error rate "
        f"{data['error_rate'] * 100:.1f}%",
        f"{'refused':20} "
        + (", ".join(f"{reason} {n}" for reason, n in data["refused"].items()) or "-"),
    ]
    for title, rows, name in (
        (f"ips (max {data['max_ips']})", data["ips"], "ip"),
        (f"user agents (max {data['max_user_agents']})", data["user_agents"], "user_agent"),
    ):
        lines.append(f"{title:20} {'-' if not rows else ''}".rstrip())
        for row in rows:
            lines.append(
                f"  {safe(row[name])[:40]:40} {row['count']:>7}  "
                f"{row['first_seen']} .. {row['last_seen']}"
            )
    return lines
