"""Run folders: claiming one, writing into it file by file, reading it back.

A folder "holds a run" only when its run.json parses. While a run writes, it
holds a lock file in the folder, so two runs never write into the same one; a
numbered folder (``runs/classes-001``) is created with an exclusive mkdir and the
next free number is taken on a clash. Every file is written to a temporary name
and moved into place, run.json last, so an interruption or a full disk never
leaves a half-written file or a folder that looks complete. ``claimed_run`` is the
one way commands hold a folder: it is let go (removed if still empty) on any exception.

A resumable run also keeps its plan (manifest.json) and its finished work items (parts/) until it is complete.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError

RUN_RECORD = "run.json"
LOCK_NAME = ".introspect-lock"
MANIFEST = "manifest.json"
PARTS = "parts"


def holds_run(folder: str | Path) -> bool:
    """True when ``folder`` has a run.json that parses as a JSON object."""
    try:
        return isinstance(json.loads((Path(folder) / RUN_RECORD).read_text()), dict)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return False


def read_record(folder: str | Path) -> dict:
    """The run.json of ``folder`` (or of the run.json path itself); UserError if unreadable."""
    path = Path(folder)
    if path.is_dir():
        path = path / RUN_RECORD
    try:
        record = json.loads(path.read_text())
    except RecursionError:
        raise UserError("'{path}' is not a readable run.json (nested too deeply)", path=path) from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError("'{path}' is not a readable run.json ({exc})",
                        path=path, exc=exc) from exc
    if not isinstance(record, dict):
        raise UserError("'{path}' is not a run.json (not a JSON object)",
                        path=path)
    return record


def _lock(folder: Path) -> int | None:
    """Take the folder's lock: an open descriptor, or None when another live process holds it."""
    import fcntl

    path = folder / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as exc:
            raise UserError("output folder '{folder}' is not writable ({strerror}); choose another",
                            folder=folder, strerror=exc.strerror) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:  # the holder before us may have removed the file after we opened it: lock the current one
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


class RunFolder:
    """A claimed run folder: write files with :meth:`file`, then :meth:`finish` with the record,
    or :meth:`abandon` to let it go (removing it if this run created it and wrote nothing)."""

    def __init__(self, path: Path, created: bool, lock_fd: int) -> None:
        self.path = path
        self.created = created
        self.files: list[str] = []
        self._lock_fd: int | None = lock_fd
        self._previous = read_record(path).get("files", []) if holds_run(path) else []

    @contextlib.contextmanager
    def file(self, name: str) -> Iterator[Path]:
        """A temporary path to write ``name`` to; moved into place when the block ends without error."""
        target = self.path / name
        temporary = self.path / f".tmp{os.getpid()}-{name}"
        try:
            yield temporary
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        if name not in self.files:
            self.files.append(name)

    def write_json(self, name: str, data: dict) -> None:
        with self.file(name) as path:
            path.write_text(json.dumps(data, indent=2, default=str) + "\n")

    def finish(self, record: dict) -> dict:
        """Drop an overwritten earlier run's files that this run did not write, then write run.json last."""
        if (self.path / RUN_RECORD).exists():
            (self.path / RUN_RECORD).unlink()
        for name in self._previous:
            if isinstance(name, str) and name not in self.files and name != RUN_RECORD and "/" not in name:
                (self.path / name).unlink(missing_ok=True)
        record = {**record, "files": sorted(set(self.files) | {RUN_RECORD})}
        self.write_json(RUN_RECORD, record)
        self.release()
        return record

    def release(self) -> None:
        if self._lock_fd is not None:
            (self.path / LOCK_NAME).unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None

    def abandon(self) -> None:
        """Release the folder; remove it if this run created it and wrote nothing (no file, no finished chunk)."""
        self.release()
        if self.created and not self.files and not finished_items(self.path):
            for remove in ((self.path / MANIFEST).unlink, (self.path / PARTS).rmdir, self.path.rmdir):
                with contextlib.suppress(OSError):
                    remove()


def _cannot_create_root(root: Path, reason: str) -> UserError:
    return UserError("cannot create the runs folder '{root}' ({reason}); name an output folder with {out}",
                     settings=("out",), root=root, reason=reason)


def _check_root(root: Path) -> None:
    """Refuse a runs folder that is a file or lies below one (mkdir would fail with less to say)."""
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise _cannot_create_root(root, "it is an existing file" if existing == root else f"'{existing}' is a file")


def _numbered(root: Path, prefix: str) -> RunFolder:
    """A new ``root/prefix-NNN`` (the next free number), created and locked by this process."""
    _check_root(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_create_root(root, exc.strerror or str(exc)) from exc
    pattern = re.compile(rf"{re.escape(prefix)}-(\d+)")
    number = max((int(m.group(1)) for p in root.iterdir() if (m := pattern.fullmatch(p.name))), default=0) + 1
    while True:
        path = root / f"{prefix}-{number:03d}"
        try:
            path.mkdir()
        except FileExistsError:
            number += 1
            continue
        except OSError as exc:
            raise UserError("cannot create output folder '{path}': {strerror}",
                            path=path, strerror=exc.strerror) from exc
        fd = _lock(path)
        if fd is None:  # another run claimed this folder first: take the next number
            number += 1
            continue
        return RunFolder(path, True, fd)


def check_out(out: str | Path | None, force: bool, root: str | Path = "runs") -> None:
    """Refuse an output folder (or, without one, a runs folder ``root``) that cannot be used, before any work starts."""
    if out is None:
        _check_root(Path(root))
        return
    if str(out).strip() == "":
        raise UserError("{out} is empty; name a folder (leave {out} out for a new numbered one)",
                        settings=("out",))
    try:
        _check_out(Path(out), force)
    except OSError as exc:  # a name too long for the file system, a folder that cannot be read
        if exc.errno == errno.ENAMETOOLONG:
            raise UserError("{out} '{path}': name too long; name a shorter folder", settings=("out",),
                            path=out) from None
        raise UserError("{out} '{path}' cannot be used ({strerror}); name another folder", settings=("out",),
                        path=out, strerror=exc.strerror or exc) from None


def _check_out(path: Path, force: bool) -> None:
    if path.exists() and not path.is_dir():
        raise UserError("{out} '{path}' is an existing file; name a folder",
                        settings=("out",), path=path)
    if holds_run(path) and not force:
        raise UserError("{out} '{path}' already holds a run; choose another folder or add {force} to overwrite it",
                        settings=("out", "force"), path=path)
    names = sorted(entry.name for entry in path.iterdir()) if path.is_dir() and not force else []
    if names and not _run_leftovers(names):  # the user's own files: a run's report.png would replace theirs
        raise UserError("{out} '{path}' holds files that are not a run's ({names}); choose an empty or new "
                        "folder, or add {force} to write into it", settings=("out", "force"), path=path,
                        names=", ".join(names[:3]) + (", ..." if len(names) > 3 else ""))
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError("cannot create output folder '{path}': '{parent}' is a file",
                                path=path, parent=parent)
            break


def _run_leftovers(names: Sequence[str]) -> bool:
    """Whether the entries of a folder holding no finished run show a run's own files: a run.json that does not
    parse, the first file a run writes (images.npz), an unfinished channels run's manifest, a lock or a file
    half-written by a run that was stopped. Such a folder is a failed or running run's, not the user's."""
    return bool({RUN_RECORD, "images.npz", MANIFEST, PARTS, LOCK_NAME}.intersection(names)) or any(
        name.startswith(".tmp") for name in names)


def claim_run_folder(out: str | Path | None, prefix: str, force: bool = False, root: str | Path = "runs",
                     resume: bool = False) -> RunFolder:
    """The folder a run writes to, claimed for this process: a new ``root/prefix-NNN``, or ``out``
    if it holds no earlier run (or ``force``) and no other run is writing into it. ``resume``: ``out``
    is an earlier run's folder with a manifest, to be completed."""
    if resume:
        path = Path(out)
        fd = _lock(path)
        if fd is None:
            raise UserError("another introspect run is writing into '{path}'; wait for it to end before resuming",
                            path=path)
        return RunFolder(path, False, fd)
    if out is None:
        return _numbered(Path(root), prefix)
    check_out(out, force)
    path = Path(out)
    created = False
    try:
        path.mkdir(parents=True)
        created = True
    except FileExistsError:
        if not path.is_dir():
            raise UserError("{out} '{path}' is an existing file; name a folder",
                            settings=("out",), path=path) from None
    except OSError as exc:
        raise UserError("cannot create output folder '{path}': {strerror}",
                        path=path, strerror=exc.strerror) from exc
    fd = _lock(path)
    if fd is None:
        raise UserError("another introspect run is writing into {out} '{path}'; wait for it or choose another "
                        "folder",
                        settings=("out",), path=path)
    run = RunFolder(path, created, fd)
    if holds_run(path) and not force:  # written by a run that finished after our first check
        run.release()
        raise UserError("{out} '{path}' already holds a run; choose another folder or add {force} to overwrite it",
                        settings=("out", "force"), path=path)
    return run


@contextlib.contextmanager
def claimed_run(out: str | Path | None, prefix: str, force: bool = False, root: str | Path = "runs",
                resume: bool = False) -> Iterator[RunFolder]:
    """``claim_run_folder`` for the duration of a block: on any exception (KeyboardInterrupt too) the folder
    is abandoned (removed if this run created it and wrote nothing); otherwise it is kept and its lock let go."""
    run = claim_run_folder(out, prefix, force, root, resume)
    try:
        yield run
    except BaseException:
        run.abandon()
        raise
    run.release()


def finished_items(folder: Path) -> set[int]:
    """The work items whose part file is in ``folder``."""
    pattern = re.compile(r"item-(\d+)\.pt")
    try:
        return {int(m.group(1)) for p in (folder / PARTS).iterdir() if (m := pattern.fullmatch(p.name))}
    except OSError:
        return set()


@dataclass
class Run:
    """A run folder read back: its run.json and its arrays (images.npz or activations.npz)."""

    path: Path
    record: dict
    arrays: dict[str, np.ndarray]

    @property
    def kind(self) -> str:
        return self.record.get("command_name", "")


def load_run(folder: str | Path) -> Run:
    """Read a run folder written by the CLI or ``save_run``; a UserError if it holds no complete run.json."""
    path = Path(folder)
    record = read_record(path)
    folder = path if path.is_dir() else path.parent
    arrays = {}
    for name in ("images.npz", "activations.npz"):
        if (folder / name).is_file():
            try:
                with np.load(folder / name) as data:
                    arrays = {key: data[key] for key in data.files}
            except Exception as exc:  # noqa: BLE001 - a damaged or hostile file fails in many ways (zip, pickle, format)
                raise UserError("'{path}' is not a readable array file ({reason})", path=folder / name,
                                reason=f"{type(exc).__name__}: {exc}".splitlines()[0][:200]) from None
            break
    return Run(folder, record, arrays)
