"""Private files and directories: what the kit creates holds secrets or hashes (issue 15, G4).

Stores keep argon2/HMAC key hashes and webhook signing secrets; spill files keep audit records
that are re-sent into the audit sink. Whatever the process umask, the kit creates its files
``0600`` and its directories ``0700`` with ``O_EXCL``/``O_NOFOLLOW`` opens, and never changes the
mode of a file or directory that already existed (the operator's choice stays theirs).
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["check_private_file", "create_private_file", "make_private_dirs"]

FILE_MODE = 0o600
DIR_MODE = 0o700
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def make_private_dirs(path: str) -> None:
    """Create ``path`` and every missing parent ``0700``; existing ones are left as they are.

    (``os.makedirs(mode=...)`` applies the mode to the leaf only.)

    Args:
        path: the directory.
    """
    path = os.path.abspath(path)
    missing: list[str] = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:  # pragma: no cover - the root always exists
            break
        path = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise


def create_private_file(path: str) -> bool:
    """Create an empty ``0600`` file unless something (a file, a link) already has that name.

    Args:
        path: the file.

    Returns:
        True when this call created the file; False when it already existed (left untouched).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, FILE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def check_private_file(fd: int, path: str) -> None:
    """Refuse an open file that another user could have planted or can still write.

    It must be a regular file owned by this process's user, with one link, and not writable by
    group or others.

    Args:
        fd: the open file.
        path: its name, for the error.

    Raises:
        PermissionError: the file is not safe to trust.
    """
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        reason = "not a regular file"
    elif hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        reason = f"owned by uid {st.st_uid}, not by this process (uid {os.geteuid()})"
    elif st.st_nlink != 1:
        reason = f"has {st.st_nlink} hard links"
    elif st.st_mode & 0o022:
        reason = f"writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    else:
        return
    raise PermissionError(errno.EPERM, f"refusing {path}: {reason}", path)
