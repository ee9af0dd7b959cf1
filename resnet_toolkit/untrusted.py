"""Reading untrusted data files without letting them run code or write outside their folder.

- :func:`load_pickle_safely`: a pickle loader that builds only plain containers, numbers, strings, bytes and
  numpy arrays (what the official ``cifar-10-batches-py`` files hold). Any other global a pickle names (``os.system``,
  ``builtins.eval``, ...) is refused before it is looked up, so nothing in the file can execute.
- :func:`iter_archive_files` / :func:`safe_extract`: tar (any compression) and zip archives whose every member
  must be a regular file or folder with a relative name that stays inside the target folder. Links, devices,
  ``..`` and absolute names make the whole archive refused, before anything is written.
"""
from __future__ import annotations

import io
import os
import pickle
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, Iterator

from resnet_toolkit.errors import UserError

# The globals a numpy array's pickle refers to (numpy 1.x and 2.x spellings), plus the one Python 3 uses to
# pickle ``bytes`` under protocol 2. Everything else a pickle asks for is refused.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def load_pickle_safely(source: str | os.PathLike | IO[bytes] | bytes, what: str = "") -> object:
    """Unpickle ``source`` (a path, a binary file or bytes) allowing only data, never code.

    Python-2 pickles (the official CIFAR-10 batches) are read with ``encoding='bytes'``, so their keys come back
    as ``bytes``. Raises :class:`UserError` naming ``what`` (default: the path) when the pickle asks for anything
    but plain containers, bytes, numbers and numpy arrays, or when it is not a readable pickle; object arrays
    are refused too, since their elements could be anything.
    """
    import numpy as np

    label = what or (str(source) if isinstance(source, (str, os.PathLike)) else "pickle")
    if isinstance(source, (bytes, bytearray)):
        fh: IO[bytes] = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        try:
            fh = open(source, "rb")
        except OSError as exc:
            raise UserError(f"{label}: cannot read: {exc.strerror}") from None
    else:
        fh = source
    try:
        obj = _RestrictedUnpickler(fh, encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise UserError(f"{label}: unsafe or invalid pickle: {exc}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as exc:
        raise UserError(f"{label}: not a valid pickle ({type(exc).__name__}: {exc})") from None
    finally:
        if isinstance(source, (str, os.PathLike)):
            fh.close()

    def has_object_array(value: object, depth: int = 0) -> bool:
        if depth > 20:
            return True
        if isinstance(value, np.ndarray):
            return value.dtype.hasobject
        if isinstance(value, dict):
            return any(has_object_array(k, depth + 1) or has_object_array(v, depth + 1) for k, v in value.items())
        if isinstance(value, (list, tuple, set, frozenset)):
            return any(has_object_array(v, depth + 1) for v in value)
        return False

    if has_object_array(obj):
        raise UserError(f"{label}: unsafe or invalid pickle: object arrays are not allowed")
    return obj


def member_path(name: str, archive: str | os.PathLike = "archive") -> PurePosixPath | None:
    """The safe relative path of an archive member called ``name``; ``None`` for the archive's root ('.', '').

    Raises :class:`UserError` for an absolute name, a Windows drive or backslash path, or any ``..`` part: such a
    member would land outside the target folder.
    """
    if "\x00" in name:
        raise UserError(f"{archive}: member {name!r} has a NUL byte in its name; refusing the archive")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UserError(f"{archive}: member {name!r} has an absolute name; refusing the archive")
    if "\\" in name:
        raise UserError(f"{archive}: member {name!r} uses backslashes in its name; refusing the archive")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if ".." in parts:
        raise UserError(f"{archive}: member {name!r} points outside the target folder ('..'); refusing the archive")
    return PurePosixPath(*parts) if parts else None


def _open_archive(archive: Path):
    if not archive.is_file():
        raise UserError(f"{archive}: no such archive")
    if zipfile.is_zipfile(archive):
        return "zip", zipfile.ZipFile(archive)
    try:
        return "tar", tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UserError(f"{archive}: not a readable tar or zip archive ({exc})") from None


def _zip_kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "link"
    if info.is_dir():
        return "dir"
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "special"
    return "file"


def _tar_kind(info: tarfile.TarInfo) -> str:
    if info.issym() or info.islnk():
        return "link"
    if info.isdir():
        return "dir"
    if info.isfile():
        return "file"
    return "special"


def _checked_member(kind: str, info, archive: Path) -> tuple[PurePosixPath | None, str]:
    """``(safe path or None for the archive root, 'file' | 'dir')`` of one member; a :class:`UserError` for a link,
    a device or fifo, ``..`` or an absolute name."""
    name = info.filename if kind == "zip" else info.name
    what = _zip_kind(info) if kind == "zip" else _tar_kind(info)
    if what == "link":
        raise UserError(f"{archive}: member {name!r} is a link; refusing the archive")
    if what == "special":
        raise UserError(f"{archive}: member {name!r} is not a regular file or folder; refusing the archive")
    return member_path(name, archive), what


def list_archive(archive: str | os.PathLike) -> list[tuple[PurePosixPath, str]]:
    """``(safe path, kind)`` for every member of ``archive`` (kind: 'file' or 'dir').

    Raises :class:`UserError` at the first hostile member (link, device, fifo, ``..``, absolute name), so a caller
    that lists first writes nothing from a refused archive.
    """
    archive = Path(archive)
    kind, handle = _open_archive(archive)
    out = []
    try:
        infos = handle.infolist() if kind == "zip" else handle.getmembers()
        for info in infos:
            path, what = _checked_member(kind, info, archive)
            if path is not None:
                out.append((path, what))
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise UserError(f"{archive}: damaged archive ({exc})") from None
    finally:
        handle.close()
    return out


def iter_archive_files(archive: str | os.PathLike) -> Iterator[tuple[PurePosixPath, bytes]]:
    """Yield ``(safe relative path, content)`` for each regular file in ``archive``, in archive order.

    Nothing is written to disk; a hostile member (see :func:`list_archive`) raises :class:`UserError` when the
    reading reaches it, so a caller must consume the whole archive before acting on it.
    """
    archive = Path(archive)
    kind, handle = _open_archive(archive)
    try:
        infos = handle.infolist() if kind == "zip" else handle
        for info in infos:
            path, what = _checked_member(kind, info, archive)
            if what == "file" and path is not None:
                yield path, (handle.read(info) if kind == "zip" else handle.extractfile(info).read())
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise UserError(f"{archive}: damaged archive ({exc})") from None
    finally:
        handle.close()


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> int:
    """Extract ``archive`` into ``dest`` (created if needed); returns the number of files written.

    Every member is checked before the first write; each target path is also resolved (following links that
    already exist in ``dest``) and must stay inside ``dest``. Files get mode 0644, folders 0755: no set-uid bits,
    owners or times from the archive.
    """
    archive, dest = Path(archive), Path(dest)
    members = list_archive(archive)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    for path, _kind in members:
        target = (root / path).resolve()
        if target != root and root not in target.parents:
            raise UserError(f"{archive}: member {str(path)!r} would be written outside {dest}; refusing the archive")
    written = 0
    for path, content in iter_archive_files(archive):
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        real = target.parent.resolve()
        if real != root and root not in real.parents:
            raise UserError(f"{archive}: member {str(path)!r} would be written outside {dest}; refusing the archive")
        if target.is_symlink():
            raise UserError(f"{archive}: member {str(path)!r} would overwrite the link {target}; refusing")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        written += 1
    for path, what in members:
        if what == "dir":
            (root / path).mkdir(parents=True, exist_ok=True)
    return written
