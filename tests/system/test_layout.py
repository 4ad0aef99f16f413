"""The tests mirror the package: every test module lives in tests/lib (the library, called as a library),
tests/cli (the command line) or tests/system (end to end, across processes), and at most 40% of them drive
the command line, so library behaviour is tested by calling the library."""
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
LAYERS = ("lib", "cli", "system")
MAX_CLI_SHARE = 0.40

#: What driving the command line looks like in test source: importing its package (introspect_cli.main's
#: main, a command module), calling main([...]), or starting `python -m introspect_cli.main`.
DRIVES_CLI = re.compile(r"^\s*(from|import)\s+introspect_cli\b|\bmain\(\[|[\"']-m[\"'],\s*[\"']introspect_cli"
                        r"|[\"']introspect_cli\.main[\"']", re.MULTILINE)


def _modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("test_*.py") if "assets" not in p.parts and "zoo" not in p.parts)


def _helpers_driving_cli() -> set[str]:
    """The shared helper modules beside the tests (tests/*.py but conftest and test modules) that drive the
    command line: a test module importing one drives it too."""
    return {p.stem for p in TESTS.glob("*.py")
            if not p.name.startswith("test_") and p.name != "conftest.py" and DRIVES_CLI.search(p.read_text())}


def drives_cli(path: Path, helpers: set[str]) -> bool:
    text = path.read_text()
    imports_helper = any(re.search(rf"^\s*(from\s+{name}\s+import|import\s+{name}\b)", text, re.MULTILINE)
                         for name in helpers)
    return bool(DRIVES_CLI.search(text)) or imports_helper


def test_the_scanner_sees_each_way_of_driving_the_command_line():
    assert _helpers_driving_cli() == {"cli_helpers", "reference"}  # helpers.py calls the library only
    for text in ("from introspect_cli.main import main", "    import introspect_cli.commands.channels as c",
                 "assert main(['classes']) == 0", 'subprocess.run([sys.executable, "-m", "introspect_cli.main"])'):
        assert DRIVES_CLI.search(text), text
    assert not DRIVES_CLI.search("found = _imports('introspect_cli', ROOT / 'cli')")  # naming the package is not driving it


def test_every_test_module_lives_in_lib_cli_or_system():
    misplaced = [str(p.relative_to(TESTS)) for p in _modules() if p.parent.parent != TESTS or p.parent.name not in LAYERS]
    assert misplaced == [], f"move these into tests/lib, tests/cli or tests/system: {misplaced}"


def test_test_module_names_are_unique():
    """pytest's default import mode imports each test module by its basename: two of one name collide."""
    names = [p.name for p in _modules()]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []


def test_at_most_40_percent_of_test_modules_drive_the_command_line():
    helpers = _helpers_driving_cli()
    modules = _modules()
    here = Path(__file__).resolve()  # this module names the patterns it looks for
    driving = [str(p.relative_to(TESTS)) for p in modules if p != here and drives_cli(p, helpers)]
    share = len(driving) / len(modules)
    assert share <= MAX_CLI_SHARE, (f"{len(driving)} of {len(modules)} test modules ({share:.0%}) drive the command "
                                    f"line; at most {MAX_CLI_SHARE:.0%} may: test library behaviour by calling the "
                                    f"library. Driving it: {driving}")
