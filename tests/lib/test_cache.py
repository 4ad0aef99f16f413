"""The disk cache: entries by key, recomputed when unreadable, written atomically, never a failed run."""
import torch

from introspect.cache import cache_path, cached, read_entry, write_entry


def test_an_entry_is_computed_once_and_read_back(tmp_path):
    calls = []
    compute = lambda: calls.append(1) or {"x": torch.arange(3)}  # noqa: E731
    path = cache_path("explore", {"what": "layers", "v": 1})
    assert path.parent == tmp_path / "cache" / "explore" and path == cache_path("explore", {"v": 1, "what": "layers"})
    assert torch.equal(cached(path, compute)["x"], torch.arange(3)) and torch.equal(cached(path, compute)["x"], torch.arange(3))
    assert calls == [1] and [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    assert cache_path("examples", "a/b c", ".npz").name == "a_b_c.npz"


def test_a_damaged_entry_is_recomputed_and_said(tmp_path):
    path = cache_path("explore", "damaged")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a torch file")
    notes = []
    assert cached(path, lambda: [1, 2], notes=notes) == [1, 2]
    assert len(notes) == 1 and "could not be read" in notes[0] and "recomputed" in notes[0]
    assert read_entry(path) == ([1, 2], None)


def test_an_unwritable_cache_folder_means_no_caching(tmp_path, monkeypatch):
    (tmp_path / "blocked").write_text("a file where the cache folder should be")
    monkeypatch.setenv("INTROSPECT_CACHE", str(tmp_path / "blocked"))
    notes = []
    assert cached(cache_path("explore", "x"), lambda: 7, notes=notes) == 7
    assert len(notes) == 1 and "cannot write the cache" in notes[0]
    assert write_entry(cache_path("explore", "x"), 7) is not None and read_entry(cache_path("explore", "x")) == (None, None)
