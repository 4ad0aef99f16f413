"""The bad-input matrix: one line on stderr saying what is wrong, exit 2, no traceback, nothing written."""
import textwrap
import warnings

import pytest
import torch

from introspect.models import builtin_checkpoint_path, save_checkpoint
from introspect_cli.main import main


@pytest.fixture
def files(tmp_path):
    good = builtin_checkpoint_path("mnist").read_bytes()
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "cut.pt").write_bytes(good[: len(good) // 3])
    (tmp_path / "corrupt.pt").write_bytes(b"\x00garbage" * 100)
    (tmp_path / "not-image.png").write_text("hello")
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "empty-dir").mkdir()
    lenet = tmp_path / "lenet.pt"
    from introspect.models import LeNet, load_model

    save_checkpoint(lenet, LeNet(), load_model("mnist").spec.replace(architecture="lenet", logits_layer="fc3"))
    shipped = torch.load(builtin_checkpoint_path("mnist"), weights_only=True)
    for name, change in BAD_SPECS.items():
        torch.save({"state_dict": shipped["state_dict"], "spec": {**shipped["spec"], **change}}, tmp_path / f"{name}.pt")
    (tmp_path / "three-names.txt").write_text("a\nb\nc\n")
    (tmp_path / "blank-name.txt").write_text("zero\none\n\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\n\n")
    (tmp_path / "twice.txt").write_text("a\na\n" + "".join(f"{i}\n" for i in range(2, 10)))
    (tmp_path / "shapes.py").write_text(SHAPES)
    torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)), tmp_path / "whole.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
        torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))).save(str(tmp_path / "scripted.pt"))
    return tmp_path


SHAPES = """
from torch import nn


class Signal(nn.Module):  # a 1-D signal (C, L)
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 3)

    def forward(self, x):
        return self.conv(x).mean(-1)


class Scaled(Signal):  # its forward takes more than the input
    def forward(self, x, scale):
        return super().forward(x) * scale


class Video(nn.Module):  # 3-D input (C, T, H, W)
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 2, 3)

    def forward(self, x):
        return self.conv(x).mean((2, 3, 4))


class FixedView(nn.Module):  # the old CIFAR-10 tutorial's x.view(-1, N) at 12 px folds 20 px images into 4 rows each
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 5)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        return self.fc(nn.functional.max_pool2d(self.conv(x), 2).view(-1, 4 * 4 * 4))


class FoldsTheBatch(FixedView):  # runs on one image only
    def forward(self, x):
        return self.fc(nn.functional.max_pool2d(self.conv(x), 2).view(1, -1))


class SequenceFirst(nn.Module):  # (T, B, K) output, as RNN/CTC audio nets give: loads, its logits unnamed
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x).permute(2, 0, 1)


class NeedsABatch(FixedView):  # a forward that asserts a batch: it runs on several images
    def forward(self, x):
        assert x.size(0) > 1, "need a batch"
        return super().forward(x)
"""

BAD_SPECS = {
    "std0": {"std": [0.0]},
    "no-classes": {"class_names": []},
    "swish": {"activations": {"conv1": "swish"}},
    "shape2": {"input_shape": [1, 1, 28, 28]},
    "nan-mean": {"mean": [float("nan")]},
}


CASES = {
    "unknown layer": (["channels", "--layer", "conv9"], "closest: conv2, conv1"),
    "channel out of range": (["channels", "--layer", "conv1", "--channels", "32"], "channels 0-31"),
    "class out of range": (["classes", "--classes", "10"], "classes 0-9"),
    "malformed range 5-3": (["channels", "--layer", "conv1", "--channels", "5-3"], "start is after the end"),
    "malformed range a,b": (["channels", "--layer", "conv1", "--channels", "a,b"], "not N or N-M"),
    "malformed range -1": (["channels", "--layer", "conv1", "--channels", "-1"], "not N or N-M"),
    "empty channel list": (["channels", "--layer", "conv1", "--channels", ""], "empty channel list"),
    "blank channel list": (["channels", "--layer", "conv1", "--channels", " "], "empty channel list"),
    "unknown model": (["classes", "--model", "resnet"], "unknown model 'resnet'"),
    "snapshots for channels, which keep none": (["channels", "--layer", "conv1", "--snapshots", "1"],
                                                "unrecognized arguments: --snapshots 1"),
    "missing checkpoint": (["classes", "--checkpoint", "{tmp}/missing.pt"], "does not exist"),
    "empty checkpoint": (["classes", "--checkpoint", "{tmp}/empty.pt"], "is empty"),
    "corrupt checkpoint": (["classes", "--checkpoint", "{tmp}/corrupt.pt"], "corrupt or truncated"),
    "truncated checkpoint": (["classes", "--checkpoint", "{tmp}/cut.pt"], "corrupt or truncated"),
    "checkpoint of another architecture": (["classes", "--model", "torchvision:resnet18", "--size", "32",
                                            "--checkpoint", "{tmp}/lenet.pt"], "does not fit the model"),
    "size wrong for fixed input": (["classes", "--size", "32"], "does not run on input of shape (1, 32, 32)"),
    "out is an existing file": (["classes", "--out", "{tmp}/a-file"], "is an existing file"),
    "out not writable": (["classes", "--out", "{tmp}/a-file/sub"], "cannot create output folder"),
    "steps 0": (["classes", "--steps", "0"], "must be at least 1"),
    "steps negative": (["channels", "--layer", "conv1", "--steps", "-5"], "must be at least 1"),
    "lr zero": (["classes", "--lr", "0"], "above 0"),
    "lr nan": (["classes", "--lr", "nan"], "above 0"),
    "negative ink": (["classes", "--ink", "-1"], "--ink must be a finite number >= 0"),
    "infinite tv": (["classes", "--tv", "inf"], "--tv must be a finite number >= 0"),
    "unknown device": (["classes", "--device", "tpu"], "unknown device 'tpu'"),
    "cuda without gpu": (["classes", "--device", "cuda"], "no CUDA GPU"),
    "evaluate on an unknown device": (["evaluate", "--device", "tpu"], "unknown device 'tpu'"),
    "explore on an unknown device": (["explore", "{tmp}/nowhere", "--device", "tpu"], "unknown device 'tpu'"),
    "train on an unknown device": (["train", "--out", "{tmp}/new.pt", "--device", "gpu0"], "unknown device 'gpu0'"),
    "empty data dir": (["evaluate", "--data-dir", "{tmp}/empty-dir"], "holds no MNIST files"),
    "channels data dir without a dataset": (["channels", "--layer", "conv1", "--data-dir", "{tmp}/empty-dir"],
                                            "--data-dir '{tmp}/empty-dir' holds no MNIST files"),
    "channels fashion data dir without a dataset": (["channels", "--model", "fashion-mnist", "--layer", "conv1",
                                                     "--data-dir", "{tmp}/empty-dir"], "holds no FashionMNIST files"),
    "data dir is a file": (["channels", "--layer", "conv1", "--dataset", "mnist", "--data-dir", "{tmp}/a-file"], "is a file"),
    "image not an image": (["activations", "--image", "{tmp}/not-image.png"], "is not an image"),
    "image missing": (["activations", "--image", "{tmp}/nope.png"], "does not exist"),
    "unknown format": (["classes", "--format", "png,bmp"], "unknown --format 'bmp'"),
    "snapshot past the end": (["classes", "--steps", "10", "--snapshots", "20"], "outside 1-10"),
    "checkpoint spec with std 0": (["classes", "--checkpoint", "{tmp}/std0.pt"],
                                   "checkpoint '{tmp}/std0.pt' has an invalid spec: std must be > 0 for every channel, got (0.0,)"),
    "checkpoint spec without classes": (["classes", "--checkpoint", "{tmp}/no-classes.pt"],
                                        "has an invalid spec: class_names must hold at least one name"),
    "checkpoint spec with unknown activation": (["channels", "--layer", "conv1", "--checkpoint", "{tmp}/swish.pt"],
                                                "has an invalid spec: activations names unknown function 'swish'"),
    "checkpoint spec with malformed input_shape": (["layers", "--checkpoint", "{tmp}/shape2.pt"],
                                                   "has an invalid spec: input_shape must be (C, H, W), (C, L) or (L,)"),
    "checkpoint spec with NaN mean": (["evaluate", "--checkpoint", "{tmp}/nan-mean.pt"],
                                      "has an invalid spec: mean must hold one finite number per input channel"),
    "std 0 flag": (["classes", "--std", "0"], "--std values must be above 0"),
    "class names count differs": (["classes", "--class-names", "{tmp}/three-names.txt"],
                                  "--class-names has 3 names, but the model has 10 classes"),
    "a blank line among the class names": (["classes", "--class-names", "{tmp}/blank-name.txt"],
                                           "blank-name.txt': line 3 is blank; give every class a name"),
    "a class name given twice": (["classes", "--class-names", "{tmp}/twice.txt", "--classes", "a"],
                                 "twice.txt': 'a' is on lines 1 and 2; give each class its own name"),
    "size for a 1-D signal model": (["layers", "--model", "{tmp}/shapes.py:Signal", "--size", "64"],
                                    "its first conv is a Conv1d, which takes a 1-D signal: pass --input-shape C,L (e.g. 1,64)"),
    "three means for a one-channel model": (["layers", "--model", "{tmp}/shapes.py:Signal", "--input-shape", "1,8",
                                             "--mean", "0.5,0.5,0.5"],
                                            "--mean has 3 values; the input has one channel (give one value)"),
    "forward with another argument": (["layers", "--model", "{tmp}/shapes.py:Scaled", "--input-shape", "1,8"],
                                      "forward() missing 1 required positional argument: 'scale'; give the others "
                                      "with --forward-arg NAME=VALUE"),
    "size and input shape that disagree": (["layers", "--model", "{tmp}/shapes.py:Signal", "--size", "64",
                                            "--input-shape", "1,8"],
                                           "--size 64 and --input-shape 1,8 disagree; give one of them"),
    "size that a fixed view folds into more rows": (["classes", "--model", "{tmp}/shapes.py:FixedView", "--size",
                                                      "20"],
                                                     "gives 8 output rows for 2 input images of shape (3, 20, 20), not "
                                                     "one per image (check --size / --input-shape)"),
    "a forward that folds the batch": (["classes", "--model", "{tmp}/shapes.py:FoldsTheBatch", "--size", "12"],
                                       "runs on one image of shape (3, 12, 12) but not on a batch of 2"),
    "an introspect checkpoint given as the model": (["evaluate", "--model", "{tmp}/lenet.pt"],
                                                    "is an introspect checkpoint (its architecture and metadata "
                                                    "inside): pass it as --checkpoint FILE, without --model"),
    "3-D input model": (["layers", "--model", "{tmp}/shapes.py:Video", "--input-shape", "3,8,8"],
                        "its first conv is a Conv3d, which takes 3-D input (video, volumes)"),
    "whole pickled model without trust": (["classes", "--model", "{tmp}/shapes.py:Signal", "--input-shape", "1,8",
                                           "--checkpoint", "{tmp}/whole.pt"],
                                          "needs full unpickling, which can run code (it holds "
                                          "torch.nn.modules.container.Sequential, not only tensors)"),
    "logits layer of a TorchScript model": (["classes", "--model", "{tmp}/scripted.pt", "--input-shape", "1,2,2",
                                             "--logits-layer", "1"], "TorchScript submodules cannot take"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_matrix(name, files, capsys):
    if name == "cuda without gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    argv, message = CASES[name]
    argv = [a.replace("{tmp}", str(files)) for a in argv]
    before = sorted(p.relative_to(files) for p in files.rglob("*"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith(("note:", "plan:", "data:"))]
    assert len(lines) == 1, err
    assert message.replace("{tmp}", str(files)) in lines[0] and "Traceback" not in err
    assert sorted(p.relative_to(files) for p in files.rglob("*")) == before  # nothing written or removed
    assert not (files / "runs").exists()


def test_runtime_failure_is_one_line_exit_1(tmp_path, capsys):
    path = tmp_path / "boom.py"
    path.write_text(textwrap.dedent("""
        import torch
        from torch import nn
        class Boom(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 2, 3)
                self.calls = 0
            def forward(self, x):
                self.calls += 1
                if self.calls > 5:  # after loading (dry forwards, one torch.fx trace): mid-optimization
                    raise RuntimeError("the model broke")
                return self.conv(x).mean((2, 3))
    """))
    argv = ["classes", "--model", f"{path}:Boom", "--size", "8", "--steps", "5", "--out", str(tmp_path / "run")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "failed: RuntimeError: the model broke" in err and "--debug" in err and "Traceback" not in err


def test_nan_objective_stops_that_class_keeps_others(tmp_path, capsys):
    path = tmp_path / "nanny.py"
    path.write_text(textwrap.dedent("""
        import torch
        from torch import nn
        class Nanny(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(16, 3)
            def forward(self, x):
                out = self.fc(x.flatten(1))
                return torch.cat([out[:, :1], out[:, 1:2] * float("nan"), out[:, 2:]], 1)
    """))
    out = tmp_path / "run"
    assert main(["classes", "--model", f"{path}:Nanny", "--input-shape", "1,4,4", "--steps", "4", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "class(es) 1 failed" in err and "NaN/inf" in err
    import json

    record = json.loads((out / "run.json").read_text())
    assert record["stopped_non_finite"] == [1]


LOG_OF_RELU = """
import torch
import torch.nn.functional as F
from torch import nn
class LogNet(nn.Module):  # the log of ReLU'd features: -inf wherever one is 0, NaN scores from the start
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4, 3)
        with torch.no_grad():
            self.conv.bias[0] = -100.0  # channel 0 is 0 everywhere
    def forward(self, x):
        return self.fc(torch.log(F.relu(self.conv(x)).mean((2, 3))))
"""


def test_a_model_nan_from_the_start_is_not_told_to_lower_the_learning_rate(tmp_path, capsys):
    """A model whose scores are NaN on the starting image was told "lower --lr or --tv": no setting of the
    optimization reaches a failure before its first update."""
    (tmp_path / "lognet.py").write_text(LOG_OF_RELU)
    argv = ["classes", "--model", f"{tmp_path / 'lognet.py'}:LogNet", "--input-shape", "1,8,8", "--steps", "3",
            "--out", str(tmp_path / "run")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "from the start, before any update" in err and "--lr" not in err


def _activations_argv(tmp_path, module, name, pixels=None):
    """`introspect activations` of class ``name`` in the file ``module`` on one 1x8x8 input (``pixels``, else random),
    written to tmp_path/run: the command line and that folder."""
    import numpy as np

    np.save(tmp_path / "input.npy", np.random.default_rng(0).random((1, 8, 8), dtype=np.float32) if pixels is None
            else pixels)
    out = tmp_path / "run"
    return ["activations", "--model", f"{module}:{name}", "--input-shape", "1,8,8", "--image",
            str(tmp_path / "input.npy"), "--out", str(out)], out


def test_activations_of_a_nan_output_is_an_error_naming_where_it_starts(tmp_path, capsys):
    """activations printed "prediction: 2 (p=nan)" and exited 0, with a saliency of NaN and matplotlib's warnings on
    stderr. The layers' outputs are still written (where the NaN starts is what to look at)."""
    import json

    import numpy as np

    (tmp_path / "lognet.py").write_text(LOG_OF_RELU)
    argv, out = _activations_argv(tmp_path, tmp_path / "lognet.py", "LogNet", np.full((1, 8, 8), 0.5, dtype=np.float32))
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "error: the model's output on this input is NaN/inf (NaN/inf in the output of fc)" in err
    assert "Warning" not in err and "prediction:" not in err
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed" and record["prediction"] is None and record["top5"] == []
    assert (out / "report.png").is_file() and (out / "activations.npz").is_file()


class _ClosedPipe:
    """A stdout whose reader has gone (``introspect layers | head -1``): every write fails."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        pass

    def fileno(self) -> int:  # rich points it at os.devnull before it exits
        return self.fd

    def isatty(self) -> bool:
        return False


def test_a_closed_pipe_ends_quietly_not_blaming_the_model(capsys, monkeypatch):
    import os
    import sys

    fd = os.open(os.devnull, os.O_WRONLY)
    try:
        monkeypatch.setattr(sys, "stdout", _ClosedPipe(fd))
        assert main(["layers"]) == 1
    finally:
        os.close(fd)
    assert capsys.readouterr().err == ""


def test_a_forward_that_asserts_a_batch_runs(files, capsys):
    """Every dry forward runs on two images (``layers.DRY_BATCH``): a model that needs a batch is not refused."""
    out = files / "batched"
    assert main(["classes", "--model", f"{files}/shapes.py:NeedsABatch", "--size", "12", "--classes", "0,1",
                 "--steps", "2", "--out", str(out)]) == 0, capsys.readouterr().err
    assert (out / "report.png").is_file()


def test_a_sequence_first_output_still_loads(files, capsys):
    """The rows check applies where the output is taken as (batch, classes): a (T, B, K) output is not refused."""
    assert main(["layers", "--model", f"{files}/shapes.py:SequenceFirst", "--input-shape", "1,8"]) == 0
    assert "conv" in capsys.readouterr().out


def test_a_text_model_is_refused_for_its_token_ids_not_its_shape(tmp_path, capsys):
    """An nn.Embedding model got torch's "Expected tensor for argument #1 'indices' ..." and "(check --size /
    --input-shape)": no shape fixes it."""
    (tmp_path / "text.py").write_text(textwrap.dedent("""
        from torch import nn
        class TextNet(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb, self.fc = nn.Embedding(100, 16), nn.Linear(16, 3)
            def forward(self, x):
                return self.fc(self.emb(x).mean(1))
    """))
    assert main(["layers", "--model", f"{tmp_path / 'text.py'}:TextNet", "--input-shape", "12"]) == 2
    err = capsys.readouterr().err
    assert "takes integer token ids (emb is an nn.Embedding)" in err and "--input-shape" not in err


def test_activations_without_logits_names_the_flags_that_give_them(tmp_path, capsys):
    """A model returning a dict got "no prediction (the model's logits are unknown)" and no word of how to name them."""

    (tmp_path / "dict.py").write_text(textwrap.dedent("""
        from torch import nn
        class DictOut(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4, 3)
            def forward(self, x):
                features = self.conv(x).mean((2, 3))
                return {"logits": self.fc(features), "features": features}
    """))
    argv, _ = _activations_argv(tmp_path, tmp_path / "dict.py", "DictOut")
    assert main(argv) == 0
    assert "no prediction (the model's logits are unknown: name them with --logits-layer NAME or --logits-output KEY)" \
        in capsys.readouterr().out


def test_activations_ranks_its_top_5_by_the_scores_its_prediction_comes_from(tmp_path, capsys):
    """With a thousand logits of about 1e-10 (a random MobileNetV3's) every probability is 0.001 in float32: the top 5,
    sorted by probability, left out the predicted class (the logits' argmax)."""
    import json

    import numpy as np

    (tmp_path / "flat.py").write_text(textwrap.dedent("""
        from torch import nn
        class Flat(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(64, 1000)
            def forward(self, x):
                return self.fc(x.flatten(1)) * 1e-10
    """))
    argv, out = _activations_argv(tmp_path, tmp_path / "flat.py", "Flat")
    assert main(argv) == 0
    record = json.loads((out / "run.json").read_text())
    ranked = [entry["class"] for entry in record["top5"]]
    assert record["prediction"]["class"] == ranked[0] and len(set(ranked)) == 5
    scores = np.load(out / "activations.npz")["fc"]
    assert list(np.argsort(-scores, kind="stable")[:5]) == ranked


def test_a_channel_mismatch_and_a_too_small_input_say_what_is_wrong(tmp_path, capsys):
    """Both ended in "its input may be fixed at (3, 224, 224)": an input too small for the layers (AlexNet runs at
    64 px, not at 32) and a grey input to an RGB model."""
    (tmp_path / "net.py").write_text(textwrap.dedent("""
        from torch import nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.stem, self.pool, self.fc = nn.Conv2d(3, 4, 3), nn.MaxPool2d(4), nn.Linear(4, 2)
            def forward(self, x):
                return self.fc(self.pool(self.pool(self.stem(x))).mean((2, 3)))
    """))
    model = f"{tmp_path / 'net.py'}:Net"
    assert main(["layers", "--model", model, "--input-shape", "1,32,32"]) == 2
    assert "Net's first conv takes 3-channel input, not 1: pass --input-shape 3,32,32" in capsys.readouterr().err
    assert main(["layers", "--model", model, "--size", "8"]) == 2
    err = capsys.readouterr().err
    assert "too small for its layers" in err and "give a larger --size" in err


def test_activations_warns_of_a_saliency_that_is_zero_everywhere(tmp_path, capsys):
    """A model whose output ignores its input got an all-zero saliency drawn on a 0-1 colour scale, and no word."""
    (tmp_path / "const.py").write_text(textwrap.dedent("""
        from torch import nn
        class Const(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(64, 3)
            def forward(self, x):
                return self.fc(x.flatten(1) * 0)
    """))
    argv, _ = _activations_argv(tmp_path, tmp_path / "const.py", "Const")
    assert main(argv) == 0
    assert "warning: the saliency is 0 at every pixel" in capsys.readouterr().err


def test_the_channel_advice_names_the_conv_that_runs_first_and_a_masked_class_is_no_failure(tmp_path, capsys):
    """A head conv defined before the stem gave "pass --input-shape 16,..." (the head's channels); and activations
    failed a model that masks a class with a -inf score, which is a class of probability 0."""
    import json

    (tmp_path / "nets.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn
        class HeadFirst(nn.Module):
            def __init__(self):
                super().__init__()
                self.head, self.stem = nn.Conv2d(16, 2, 1), nn.Conv2d(3, 16, 3)
            def forward(self, x):
                return self.head(self.stem(x)).mean((2, 3))
        class Masked(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(64, 4)
            def forward(self, x):
                return self.fc(x.flatten(1)) + torch.tensor([0.0, 0.0, 0.0, float("-inf")])
    """))
    assert main(["layers", "--model", f"{tmp_path / 'nets.py'}:HeadFirst", "--input-shape", "1,16,16"]) == 2
    assert "takes 3-channel input, not 1: pass --input-shape 3,16,16" in capsys.readouterr().err
    argv, out = _activations_argv(tmp_path, tmp_path / "nets.py", "Masked")
    assert main(argv) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete" and record["prediction"]["class"] != 3
    assert record["top5"][-1] == {"class": 3, "name": "3", "probability": 0.0}
