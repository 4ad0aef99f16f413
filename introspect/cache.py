"""One disk cache for what is slow to compute and cheap to keep: entries under the user cache folder.

An entry is a file named by its key; it is read back when it can be, recomputed when it is missing
or cannot be read (any error: a damaged zip, a torch.load failure, contents that do not fit), and
written atomically (a temporary name in the same folder, then a rename), so a crash or a full disk
leaves no half entry. A cache folder that cannot be written means no caching, never a failed run;
what went wrong is returned as notes for the caller to show.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from .data import cache_dir

T = TypeVar("T")


def cache_path(section: str, key: dict | str, suffix: str = ".pt") -> Path:
    """The entry of ``key`` in ``cache_dir()/section``: a JSON-able dict is hashed (its sha256, 24 hex
    digits); a string is used as the file name (characters other than letters, digits, ``._-`` replaced)."""
    if isinstance(key, dict):
        name = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    else:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", key)
    return cache_dir() / section / f"{name}{suffix}"


def torch_load(path: Path) -> Any:
    """Tensors, dicts, lists and numbers saved by torch_save (no unpickling of code)."""
    return torch.load(path, weights_only=True)


def torch_save(value: Any, path: Path) -> None:
    torch.save(value, path)


def read_entry(path: Path, load: Callable[[Path], T] = torch_load) -> tuple[T | None, str | None]:
    """(the entry, None); (None, None) when there is none; (None, a note) when it cannot be read —
    ``load`` may raise anything (ValueError for contents that do not fit the request)."""
    try:
        return load(path), None
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways (zip, zlib, pickle, shapes)
        reason = str(exc).splitlines()[0] if str(exc) else ""
        return None, f"the cache entry '{path}' could not be read ({type(exc).__name__}: {reason}); recomputed it"


def write_entry(path: Path, value: T, save: Callable[[T, Path], None] = torch_save) -> str | None:
    """Write ``value`` with ``save(value, temporary_path)`` and move it into place; a note when it cannot be
    written (the temporary file removed). The temporary name keeps the suffix (numpy's savez appends one)."""
    temporary = path.with_name(f".tmp{os.getpid()}-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save(value, temporary)
        os.replace(temporary, path)
    except OSError as exc:
        return f"cannot write the cache in '{path.parent}' ({exc.strerror or exc}); not cached"
    finally:
        with contextlib.suppress(OSError):  # no folder to hold it, or nothing was written
            temporary.unlink(missing_ok=True)
    return None


def cached(path: Path, compute: Callable[[], T], load: Callable[[Path], T] = torch_load,
           save: Callable[[T, Path], None] = torch_save, notes: list[str] | None = None) -> T:
    """The entry at ``path`` if it can be read, else ``compute()``'s result, written there; notes on a
    damaged entry or an unwritable folder are appended to ``notes``."""
    value, note = read_entry(path, load)
    if note and notes is not None:
        notes.append(note)
    if value is not None:
        return value
    value = compute()
    note = write_entry(path, value, save)
    if note and notes is not None:
        notes.append(note)
    return value
