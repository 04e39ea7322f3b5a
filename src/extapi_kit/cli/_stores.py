"""Store checks shared by the CLI's command groups.

Read-only commands (``keys list``/``show``/``usage``, ``usage show``, ``audit query``,
``webhooks list``/``deliveries``/``test``) never create a store: opening ``sqlite:///typo.db``
would create an empty database (and ``sqlite:///no/such/dir/x.db`` its directories) and answer
with an empty table and exit 0, hiding the typo. They call :func:`require_existing` first, which
refuses a SQLite file that does not exist and names the missing path (issue 18 §5). Servers
(``memory://``, ``redis://``, ``postgresql://``) have no file to create and are not checked here.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from extapi_kit.exceptions import ConfigurationError

__all__ = ["missing_sqlite_file", "require_existing"]


def missing_sqlite_file(url: str) -> str | None:
    """Return the path of a ``sqlite:///`` store whose file does not exist, else None.

    Args:
        url: a store URL of any scheme.
    """
    if urlsplit(url).scheme.lower() != "sqlite":
        return None
    # Imported here: stores._sqlite loads sqlite3, which `extapi-kit --help` must not.
    from extapi_kit.stores._sqlite import sqlite_path_from_url

    path = sqlite_path_from_url(url)
    if path == ":memory:" or Path(path).exists():
        return None
    return path


def require_existing(url: str, what: str, option: str = "--store") -> str:
    """Return ``url``, or refuse a SQLite store whose file does not exist (nothing is created).

    Args:
        url: the store URL.
        what: the store's role in the message (``"key store"``).
        option: the option that chooses it, for the hint.

    Raises:
        ConfigurationError: the file does not exist; the message names its absolute path.
    """
    path = missing_sqlite_file(url)
    if path is not None:
        raise ConfigurationError(
            f"{what} does not exist: no file {str(Path(path).absolute())!r}"
            f" (check {option} or the working directory; read-only commands never create one)"
        )
    return url
