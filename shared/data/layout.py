"""The authors' on-disk layout, ROOT/NAME/{Images/, train.txt, val.txt, test.txt}.

Also the one way this package writes output: into a temporary sibling folder that is
renamed into place at the end, so a failure never leaves a half-written dataset.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from shared.errors import UserError

SPLITS = ("train", "val", "test")
IMAGES = "Images"


def folder_names(name: str) -> list[str]:
    """Spellings accepted for a dataset folder: `IQAD_CT` and the authors' `IQAD-CT`."""
    canonical = name.upper().replace("-", "_")
    names = [canonical]
    if "_" in canonical:
        names.append(canonical.replace("_", "-"))
    return names


def dataset_name_of(folder: Path) -> str:
    """Canonical dataset name for a folder named like `IQAD-CT` or `eyeq`."""
    return folder.name.upper().replace("-", "_")


def find_dataset_dir(data_root: Path, name: str) -> Path:
    """ROOT/NAME under either spelling; a clear error naming both when absent."""
    data_root = Path(data_root)
    if not data_root.is_dir():
        raise UserError(
            "data root not found; pass the folder that holds the dataset folders", path=data_root
        )
    for candidate in folder_names(name):
        if (data_root / candidate).is_dir():
            return data_root / candidate
    tried = " or ".join(folder_names(name))
    raise UserError(
        f"no dataset folder {tried} here (expected ROOT/NAME/Images and ROOT/NAME/train.txt)",
        path=data_root,
    )


def resolve_dataset_dir(data_root: Path, name: str) -> Path:
    """ROOT/NAME (either spelling); ROOT itself when it already is the NAME folder."""
    data_root = Path(data_root)
    if (
        dataset_name_of(data_root) == name.upper().replace("-", "_")
        and (data_root / "train.txt").is_file()
    ):
        return data_root
    return find_dataset_dir(data_root, name)


def split_path(dataset_dir: Path, split: str) -> Path:
    return Path(dataset_dir) / f"{split}.txt"


def present_splits(dataset_dir: Path) -> list[str]:
    """Split names with a split file in this dataset folder, in train/val/test order."""
    return [s for s in SPLITS if split_path(dataset_dir, s).is_file()]


@contextlib.contextmanager
def staged_dir(target: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that replaces `target` only if the block succeeds."""
    target = Path(target)
    if target.exists() and not force:
        raise UserError("output already exists; choose another --out or pass --force", path=target)
    made = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in made:  # parents created for this output, innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
        tmp.rename(target)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        tmp.rename(target)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a small file via a temporary name and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def link_file(src: Path, dst: Path, copy: bool = False) -> None:
    """Place `src` at `dst` as an absolute symlink (or a copy): datasets are never duplicated
    unless asked."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        shutil.copy2(src, dst)
    else:
        os.symlink(os.path.abspath(src), dst)
