"""The example scripts run as a user would run them (in a fresh folder) and write their pictures."""
import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("script,picture", [("classes.py", "classes.png"), ("channels.py", "conv2.png")])
def test_example_runs(script, picture, tmp_path, capsys):
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    assert (tmp_path / picture).stat().st_size > 10_000
    assert f"wrote {picture}" in capsys.readouterr().out


def test_bring_your_own_model_example(tmp_path):
    from introspect_cli.main import main

    argv = ["channels", "--model", f"{EXAMPLES / 'my_model.py'}:SmallNet", "--layer", "block2.0", "--size", "28",
            "--mean", "0.5", "--std", "0.5", "--steps", "2", "--dataset", "none", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
