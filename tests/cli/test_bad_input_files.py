"""Bad files and unbounded requests: one line on stderr, exit 2, no traceback; nothing runs without
consent and no input makes introspect take what the machine does not have."""
import struct
import textwrap
import warnings
import zlib

import pytest
import torch
from PIL import Image

from introspect.models import builtin_checkpoint_path, load_model
from introspect_cli.main import main


def png_header_only(path, width: int, height: int) -> None:
    """A PNG that claims width x height pixels (grey) and holds none: what Pillow's bomb guard sees."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def idx(path, dims: tuple[int, ...], payload: int | None = None) -> None:
    """An unsigned-byte IDX file of ``dims``, holding ``payload`` bytes of data (all of them by default)."""
    count = int(torch.tensor(dims).prod()) if payload is None else payload
    path.write_bytes(bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(count))


MODELS = textwrap.dedent("""
    import torch
    from torch import nn

    class NoClasses(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 0)
        def forward(self, x):
            return self.fc(x.flatten(1))

    class Marked(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleDict({"[bold]": nn.Conv2d(1, 2, 3), "[/]x": nn.Conv2d(2, 2, 1)})
            self.fc = nn.Linear(8, 3)
        def forward(self, x):
            return self.fc(self.blocks["[/]x"](self.blocks["[bold]"](x)).flatten(1))
""")


@pytest.fixture
def files(tmp_path):
    (tmp_path / "models.py").write_text(MODELS)
    cut = tmp_path / "cut-idx"
    cut.mkdir()
    idx(cut / "t10k-images-idx3-ubyte", (10, 28, 28), payload=100)
    idx(cut / "t10k-labels-idx1-ubyte", (10,))
    mismatch = tmp_path / "mismatch-idx"
    mismatch.mkdir()
    idx(mismatch / "t10k-images-idx3-ubyte", (5, 28, 28))
    idx(mismatch / "t10k-labels-idx1-ubyte", (4,))
    png_header_only(tmp_path / "huge.png", 20000, 20000)
    black = tmp_path / "black"
    black.mkdir()
    for i in range(3):
        Image.new("L", (28, 28)).save(black / f"{i}.png")
    shipped = torch.load(builtin_checkpoint_path("mnist"), weights_only=True)
    torch.save({"state_dict": shipped["state_dict"],
                "spec": {**shipped["spec"], "spectrum": [[float("nan")] * 15] * 28}}, tmp_path / "nan-spectrum.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
        torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))).save(str(tmp_path / "scripted.pt"))
    return tmp_path


CASES = {
    "truncated IDX file": (["evaluate", "--data-dir", "{tmp}/cut-idx"], "is truncated: it holds 100 of the 7840 bytes"),
    "IDX images and labels of different counts": (["evaluate", "--data-dir", "{tmp}/mismatch-idx"],
                                                  "holds 5 images but '{tmp}/mismatch-idx/t10k-labels-idx1-ubyte' holds 4"),
    "400-Mpx image": (["activations", "--image", "{tmp}/huge.png"], "has more pixels than introspect reads"),
    "TorchScript archive as checkpoint": (["classes", "--checkpoint", "{tmp}/scripted.pt"],
                                          "is a TorchScript archive (a whole model), not a checkpoint: pass it as --model FILE"),
    "NaN spectrum in a checkpoint's spec": (["classes", "--checkpoint", "{tmp}/nan-spectrum.pt"],
                                            "has an invalid spec: spectrum must hold finite magnitudes >= 0"),
    "data that does not vary": (["classes", "--images", "{tmp}/black", "--steps", "1"],
                                "no prior can be estimated from data that does not vary"),
    "model of zero classes": (["classes", "--model", "{tmp}/models.py:NoClasses", "--input-shape", "1,4,4"],
                              "it scores no classes"),
    "memory beyond any machine": (["channels", "--layer", "conv1", "--memory", "1e300"], "must be at most 1e+06 GiB"),
    "more processes than the machine has": (["channels", "--layer", "conv1", "--distributed", "1000000"],
                                            "--distributed: must be at most"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_file_or_bound(name, files, capsys):
    argv, message = CASES[name]
    argv = [a.replace("{tmp}", str(files)) for a in argv]
    written = lambda: sorted(p.relative_to(files) for p in files.rglob("*") if "cache" not in p.parts)  # noqa: E731
    before = written()
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith(("note:", "plan:", "data:", "prior:"))]
    assert len(lines) == 1, err
    assert message.replace("{tmp}", str(files)) in lines[0] and "Traceback" not in err
    assert written() == before  # nothing written or removed but converted pictures in the cache


def test_a_decompression_bomb_in_an_images_folder_is_skipped_and_counted(files):
    from introspect.data import load_image_folder

    folder = files / "folder"
    folder.mkdir()
    Image.new("L", (28, 28), 200).save(folder / "good.png")
    (files / "huge.png").rename(folder / "huge.png")
    data = load_image_folder(folder, load_model("mnist").spec)
    assert len(data) == 1 and "(1 unreadable skipped)" in data.source


def test_rich_markup_in_layer_names_prints_as_it_is(files, capsys):
    assert main(["layers", "--model", f"{files}/models.py:Marked", "--input-shape", "1,4,4"]) == 0
    out = capsys.readouterr().out
    assert "blocks.[bold]" in out and "blocks.[/]x" in out
