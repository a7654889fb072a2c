"""Writing a report to `-o FILE`: a regular file is replaced whole (a temporary file in the same folder,
renamed over it), never half-written; a device or a FIFO (/dev/null, /dev/stdout, a named pipe) is
written to as it is, never replaced; anything else (a folder, a socket) is refused."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["OutputError", "check_output", "write_file"]


class OutputError(Exception):
    """The report cannot go where -o says: the message says why and what to do."""


def _target(output: str) -> Path:
    """Where `output` leads: a symbolic link is followed (the file it names is replaced, not the link)."""
    path = Path(output)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def check_output(output: str, option: str = "-o") -> None:
    """OutputError now, before any work, if a report could not be written to `output`."""
    target = _target(output)
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        folder = target.parent
        if not folder.is_dir():
            raise OutputError(f"{option} {output}: the folder {folder} does not exist; create it first") from None
        return
    except OSError as exc:
        raise OutputError(f"{option} {output}: {exc.strerror}") from exc
    if stat.S_ISDIR(mode):
        raise OutputError(f"{option} {output}: is a folder; name a file in it")
    if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
        raise OutputError(f"{option} {output}: neither a regular file nor a device or FIFO; name a file")


def write_file(text: str, output: str, option: str = "-o") -> None:
    """`text` (UTF-8) into `output`, as the module says."""
    check_output(output, option)
    target = _target(output)
    try:
        if target.exists() and not stat.S_ISREG(target.stat().st_mode):  # a device or FIFO: write through
            with open(target, "w", encoding="utf-8") as fh:
                fh.write(text)
            return
        _replace(text, target)
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        reason = "no space left on the device" if full else exc.strerror or str(exc)
        raise OutputError(f"{option} {output}: cannot write the report: {reason}") from exc


def _replace(text: str, target: Path) -> None:
    try:
        mode = stat.S_IMODE(target.stat().st_mode)  # a replaced file keeps its permissions
    except FileNotFoundError:
        mode = _new_file_mode()  # as open() would have created it, not mkstemp's 0600
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        try:
            now = target.lstat().st_mode
        except FileNotFoundError:
            now = None
        if now is not None and not stat.S_ISREG(now):  # it became something else meanwhile: leave it
            raise OutputError(f"{target}: is no longer a regular file; the report was not written")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _new_file_mode() -> int:
    """0666 less the process's umask: the mode a plain open(path, "w") gives a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
