"""Ctrl-C while the ``shannon-otel`` process starts (imports the package) or exits (after the summary).

The signal is sent by the child process to itself at a known point, by a ``sitecustomize`` the test writes: when
a given module is about to be imported, or from an exit handler registered first (so run last, after the
command's own). Before: Ctrl-C during the package's import was a KeyboardInterrupt traceback (for
``python -m shannon_otel`` and the ``shannon-otel`` script alike); during the interpreter's exit it was an
"Exception ignored" traceback with exit status 0.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from test_export_faults import GUARD_S, HttpSink, answer

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")

_SITECUSTOMIZE = """\
import atexit, os, signal, sys

def _interrupt():
    os.kill(os.getpid(), signal.SIGINT)  # Python's handler runs at the next instruction: here

_at = os.environ.get("TEST_SIGINT_AT", "")
if _at == "exit":
    atexit.register(_interrupt)
elif _at.startswith("import:"):
    class _Finder:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name == _at[len("import:"):]:
                sys.meta_path.remove(_Finder)
                _interrupt()
            return None
    sys.meta_path.insert(0, _Finder)
"""
_QUIET = ("Traceback", "Exception ignored", "KeyboardInterrupt")


@pytest.fixture
def hooks(tmp_path: Path) -> Path:
    (tmp_path / "sitecustomize.py").write_text(_SITECUSTOMIZE, encoding="utf-8")
    return tmp_path


def _script(tmp_path: Path) -> list[str]:
    """The ``shannon-otel`` script as pip writes it for the entry point pyproject.toml declares."""
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]["shannon-otel"]
    module, function = entry.split(":")
    script = tmp_path / "shannon-otel"
    script.write_text(f"import re\nimport sys\nfrom {module} import {function}\nif __name__ == '__main__':\n"
                      f"    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
                      f"    sys.exit({function}())\n", encoding="utf-8")
    return [sys.executable, str(script)]


def _command(how: str, tmp_path: Path) -> list[str]:
    return [sys.executable, "-m", "shannon_otel"] if how == "python -m" else _script(tmp_path)


def _run(argv: list[str], hooks: Path, at: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "_OTEL_"))}
    env.update(PYTHONPATH=f"{hooks}{os.pathsep}{ROOT}", TEST_SIGINT_AT=at)
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=GUARD_S, check=False)


@pytest.mark.parametrize("how", ["python -m", "script"])
@pytest.mark.parametrize("module", ["shannon_otel.recovery", "shannon_otel.cli"])
def test_ctrl_c_while_the_package_imports_is_one_line_and_exit_130(how: str, module: str, hooks: Path) -> None:
    done = _run([*_command(how, hooks), "dashboards"], hooks, f"import:{module}")
    assert done.returncode == 130, done.stderr
    assert done.stderr == "shannon-otel: interrupted\n"
    assert done.stdout == ""


def test_a_program_importing_the_package_keeps_its_own_ctrl_c(hooks: Path) -> None:
    """The start-up handling is the command's: a program's `import shannon_otel` still raises KeyboardInterrupt."""
    done = _run([sys.executable, "-c", "import shannon_otel"], hooks, "import:shannon_otel.recovery")
    assert "KeyboardInterrupt" in done.stderr
    assert done.returncode != 130


@pytest.mark.parametrize("how", ["python -m", "script"])
def test_ctrl_c_while_exiting_after_the_summary_is_exit_130_without_noise(how: str, hooks: Path) -> None:
    sink = HttpSink(answer(200))
    try:
        done = _run([*_command(how, hooks), "demo", "--plain", "--waves", "1", "--tasks", "4", "--otlp-endpoint",
                     sink.endpoint, "--otlp-protocol", "http/protobuf"], hooks, "exit")
    finally:
        sink.close()
    assert done.returncode == 130, done.stderr
    assert not any(word in done.stderr for word in _QUIET), done.stderr
    assert done.stderr.endswith("shannon-otel: interrupted\n"), done.stderr
    # the summary was printed whole, and its "ok" is true: every span recorded had reached the collector
    recorded = re.search(r"^spans recorded: (\d+)$", done.stdout, re.MULTILINE)
    assert recorded is not None, done.stdout
    assert sink.spans == int(recorded.group(1)) > 0
    assert f"OTLP export to {sink.endpoint}: ok" in done.stdout


def test_the_script_entry_point_imports_no_package_before_its_main() -> None:
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]["shannon-otel"]
    assert entry == "_shannon_otel_cli:main"
    done = subprocess.run([sys.executable, "-c", "import sys, _shannon_otel_cli; print('shannon_otel' in sys.modules)"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          timeout=GUARD_S, check=True)
    assert done.stdout == "False\n"
