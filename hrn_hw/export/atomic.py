"""Write a whole output directory atomically: build it beside the target, then rename."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from hrn_hw.export.ir import ExportError


def check_target(out: Path, force: bool) -> None:
    """Fail before any work when OUT exists without --force or cannot be a directory."""
    if out.exists() and not force:
        raise ExportError(f"{out}: already exists; pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a directory")
    parent = out.resolve().parent
    if parent.exists() and not parent.is_dir():
        raise ExportError(f"{out}: {parent} is not a directory")


@contextmanager
def staged_directory(out: Path, force: bool):
    """Yield a fresh staging directory; on success it replaces `out`, on failure it vanishes."""
    check_target(out, force)
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        yield stage
        stage.chmod(0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            old.rmdir()
            out.rename(old)
            stage.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            stage.rename(out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
