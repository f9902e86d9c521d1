"""Write a whole output directory atomically: build it beside the target, then rename."""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from hrn_hw.export.ir import MANIFEST_FORMAT, ExportError


def _is_export(directory: Path) -> bool:
    """An hrn-hw export (its manifest.json says so) or an empty directory: what --force may replace."""
    if not any(directory.iterdir()):
        return True
    try:
        man = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(man, dict) and man.get("format") == MANIFEST_FORMAT


def check_target(out: Path, force: bool) -> None:
    """Fail before any work when OUT exists without --force or cannot be a directory.

    --force replaces an earlier export (or an empty directory) only: a directory of other files,
    a mistyped -o, is never deleted.
    """
    if out.exists() and not force:
        raise ExportError(f"{out}: already exists; pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a directory")
    if out.exists() and not _is_export(out):
        raise ExportError(f"{out}: exists and is not an hrn-hw export (no export manifest.json); "
                          "--force replaces only an earlier export: remove it or pick another -o")
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
            try:
                stage.rename(out)
            except BaseException:
                old.rename(out)              # put the previous export back
                raise
            if old.is_symlink():             # OUT was a link to an export: drop the link only
                old.unlink()
            else:
                shutil.rmtree(old, ignore_errors=True)
        else:
            stage.rename(out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
