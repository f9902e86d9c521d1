"""Write a whole output directory atomically: build it beside the target, then rename."""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hrn_hw.export.ir import MANIFEST_FORMAT, ExportError


@dataclass(frozen=True)
class OutputKind:
    """What kind of output directory --force may replace: one whose `marker` JSON file has
    "format": `fmt` (or an empty directory). `error` is the exception type raised on refusal;
    `what` names the marker in the message."""
    noun: str            # "export": "... is not an hrn-hw export"
    marker: str          # "manifest.json"
    fmt: str             # the marker's "format"
    error: type          # ExportError
    what: str = ""       # how the message names the marker (default: the marker's file name)


EXPORT = OutputKind("export", "manifest.json", MANIFEST_FORMAT, ExportError, what="export manifest.json")


def _is_kind(directory: Path, kind: OutputKind) -> bool:
    """An earlier output of this kind (its marker says so) or an empty directory: what --force may replace."""
    if not any(directory.iterdir()):
        return True
    try:
        data = json.loads((directory / kind.marker).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == kind.fmt


def check_target(out: Path, force: bool, kind: OutputKind = EXPORT) -> None:
    """Fail before any work when OUT exists without --force or cannot be a directory.

    --force replaces an earlier output of `kind` (or an empty directory) only: a directory of
    other files, a mistyped -o, is never deleted.
    """
    error = kind.error
    if out.exists() and not force:
        raise error(f"{out}: already exists; pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise error(f"{out}: exists and is not a directory")
    if out.exists() and not _is_kind(out, kind):
        raise error(f"{out}: exists and is not an hrn-hw {kind.noun} (no {kind.what or kind.marker}); "
                    f"--force replaces only an earlier {kind.noun}: remove it or pick another -o")
    parent = out.resolve().parent
    if parent.exists() and not parent.is_dir():
        raise error(f"{out}: {parent} is not a directory")


@contextmanager
def staged_directory(out: Path, force: bool, kind: OutputKind = EXPORT):
    """Yield a fresh staging directory; on success it replaces `out`, on failure it vanishes."""
    check_target(out, force, kind)
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
                old.rename(out)              # put the previous output back
                raise
            if old.is_symlink():             # OUT was a link to an output: drop the link only
                old.unlink()
            else:
                shutil.rmtree(old, ignore_errors=True)
        else:
            stage.rename(out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
