"""What the test machine's filesystems can do, found out the way the storage driver does."""

from __future__ import annotations

import errno
import os
from pathlib import Path

NO_DIRECT_IO = "cannot do direct I/O"  # the text tests allow to skip for in CI (allow_skip)


def why_no_direct_io(directory: Path) -> str | None:
    """None if a file in `directory` opens with O_DIRECT; else why not, for a skip reason."""
    if not hasattr(os, "O_DIRECT"):
        return f"this platform {NO_DIRECT_IO} (no O_DIRECT)"
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / ".o_direct_probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        return f"the filesystem of {directory} {NO_DIRECT_IO} (O_DIRECT refused: EINVAL)"
    else:
        os.close(fd)
        return None
    finally:
        probe.unlink(missing_ok=True)
