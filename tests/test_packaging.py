"""The package as a user installs it, from the built wheel and sdist, not from this tree.

The wheel is built from a copy of the sources with byte code planted in it (what a worked-in checkout
has), without network (``--no-build-isolation``: the test extra brings setuptools >= 77), installed
into a fresh venv that sees this interpreter's dependencies (a .pth), and run from a directory outside the
repository: the ``shannon-otel`` command, ``python -m shannon_otel``, the generated dashboards and
rules, and the ``opentelemetry_configurator`` entry point ``opentelemetry-instrument`` loads.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_BUILD_FILES = ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "_shannon_otel_cli.py")
_JUNK = ("shannon_otel/__pycache__/__init__.cpython-311.pyc", "shannon_otel/assets/__pycache__/_rules.cpython-311.pyc")


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``args``; fails the test with its output unless it exits 0 (timeout: a hang guard only)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OTEL_PYTHON_CONFIGURATOR")}
    done = subprocess.run(args, cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, f"{args} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _package_sources() -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / "shannon_otel").rglob("*.py")}


def _copy_sources(dest: Path) -> None:
    for name in _BUILD_FILES:
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "shannon_otel", dest / "shannon_otel",
                    ignore=shutil.ignore_patterns("__pycache__", "*.py[cod]"))
    for junk in _JUNK:
        (dest / junk).parent.mkdir(parents=True, exist_ok=True)
        (dest / junk).write_bytes(b"stale byte code")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    _copy_sources(src)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "--disable-pip-version-check", "-q", "-w", str(out), str(src)], cwd=src)
    (built,) = out.glob("shannon_otel-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the wheel installed (not editable); its dependencies come from this interpreter's
    site-packages, listed in a .pth after the venv's own (not --system-site-packages: when this
    interpreter is itself a venv, as in scripts/test, that would be the base Python's, without them)."""
    root = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(root)], cwd=root)
    purelib = _run([str(root / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   cwd=root).stdout.strip()
    ours = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    _run([str(root / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index",
          "--disable-pip-version-check", "-q", str(wheel)], cwd=root)
    # after the install: pip must not find this interpreter's shannon_otel (editable or not) and skip it
    (Path(purelib) / "zz_test_dependencies.pth").write_text("".join(f"{p}\n" for p in ours), encoding="utf-8")
    return root


def test_the_wheel_holds_the_package_sources_py_typed_and_metadata_only(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    package = {n for n in names if ".dist-info/" not in n}
    # no __pycache__, tests or benchmarks; the script's entry point beside the package
    assert package == _package_sources() | {"shannon_otel/py.typed", "_shannon_otel_cli.py"}
    assert "shannon-otel = _shannon_otel_cli:main" in entry_points
    assert "[opentelemetry_configurator]\nshannon_otel = shannon_otel._autoconfig:Configurator" in entry_points
    assert "License-Expression: Apache-2.0" in metadata
    # the wheel ships no docs/: its metadata links to them (pip show, the package index)
    urls = dict(line.removeprefix("Project-URL: ").split(", ", 1) for line in metadata.splitlines()
                if line.startswith("Project-URL: "))
    assert {"Homepage", "Documentation", "Changelog", "Issues"} <= set(urls), urls
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_the_wheel_metadata_states_the_tested_pythons_typing_and_the_changelog_version(wheel: Path) -> None:
    """The wheel carried no classifiers: the package index could not tell its Python versions, that it is
    typed (it ships py.typed) or for asyncio and OpenTelemetry."""
    from email.parser import Parser

    from shannon_otel import __version__

    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    metadata = Parser().parsestr(text, headersonly=True)
    classifiers = metadata.get_all("Classifier") or []
    (supported,) = re.findall(r"^SUPPORTED=\(([^)]*)\)$", (ROOT / "scripts/test").read_text(encoding="utf-8"), re.M)
    tested = supported.split()  # the Pythons scripts/test runs the unit suite on
    stated = [c.removeprefix("Programming Language :: Python :: ") for c in classifiers
              if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert stated == tested, classifiers
    assert metadata["Requires-Python"] == f">={tested[0]}"
    assert {"Typing :: Typed", "Framework :: AsyncIO", "Framework :: OpenTelemetry"} <= set(classifiers)
    assert not any(c.startswith("License ::") for c in classifiers)  # License-Expression says it (PEP 639)
    assert metadata["Version"] == __version__
    # the CHANGELOG's latest section is this version: "## [0.1.0]", or "## [Unreleased] — 0.1.0" before release
    latest = next(line for line in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8").splitlines()
                  if line.startswith("## "))
    assert re.fullmatch(rf"## \[(Unreleased\] — {re.escape(__version__)}|{re.escape(__version__)}\]).*", latest), latest


def test_the_installed_wheel_runs_its_commands_outside_the_repository(venv: Path, tmp_path: Path) -> None:
    python, bin_dir = str(venv / "bin" / "python"), venv / "bin"
    where = _run([python, "-c", "import shannon_otel; print(shannon_otel.__file__)"], cwd=tmp_path).stdout
    assert Path(where.strip()).is_relative_to(venv), where  # the wheel's copy, not this tree nor an editable one
    version = _run([str(bin_dir / "shannon-otel"), "--version"], cwd=tmp_path).stdout
    # the help points at its documentation by URL: the installed wheel has no docs/cli.md beside it
    help_text = _run([str(bin_dir / "shannon-otel"), "--help"], cwd=tmp_path).stdout
    assert "See docs/" not in help_text
    for path in re.findall(r"https://github\.com/shannon-otel/shannon-otel/blob/main/(\S+)", help_text):
        assert (ROOT / path).is_file(), path
    assert "0." in version or "1." in version
    demo = _run([python, "-m", "shannon_otel", "demo", "--waves", "1", "--tasks", "4", "--plain"], cwd=tmp_path)
    assert "spans recorded" in demo.stdout
    _run([str(bin_dir / "shannon-otel"), "dashboards", "--out", "out/dashboards"], cwd=tmp_path)
    _run([str(bin_dir / "shannon-otel"), "rules", "--out", "out/collector-config/rules/shannon-alerts.yml"],
         cwd=tmp_path)
    # what the installed wheel writes is what the repository commits (tests/test_assets.py: generator current)
    for committed in [*(ROOT / "dashboards").rglob("*.*"), ROOT / "collector-config/rules/shannon-alerts.yml"]:
        written = tmp_path / "out" / committed.relative_to(ROOT)
        assert written.read_text(encoding="utf-8") == committed.read_text(encoding="utf-8"), written
    loaded = _run([python, "-c", "from importlib.metadata import entry_points as e;"
                   "print([p.load().__module__ for p in e(group='opentelemetry_configurator', name='shannon_otel')])"],
                  cwd=tmp_path).stdout
    assert loaded.strip() == "['shannon_otel._autoconfig']"
    typed = _run([python, "-c", "import importlib.resources as r; print(r.files('shannon_otel')"
                  ".joinpath('py.typed').is_file())"], cwd=tmp_path).stdout
    assert typed.strip() == "True"


def _tracked() -> list[str]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an unpacked sdist): the tracked files are unknown")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60)
    return [n for n in listed.stdout.decode().split("\0") if n and (ROOT / n).is_file()]


def test_the_sdist_holds_every_tracked_file_but_ci_and_git_ones_and_no_byte_code(tmp_path: Path) -> None:
    tracked = _tracked()
    src, out = tmp_path / "src", tmp_path / "out"
    for name in {*tracked, *_BUILD_FILES}:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    for junk in [*_JUNK, "tests/__pycache__/conftest.cpython-311.pyc", "benchmarks/out/last.json"]:
        (src / junk).parent.mkdir(parents=True, exist_ok=True)
        (src / junk).write_bytes(b"junk")
    out.mkdir()
    _run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(out)!r})"], cwd=src)
    (sdist,) = out.glob("shannon_otel-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {m.name.split("/", 1)[1] for m in archive.getmembers() if m.isfile()}
    expected = {n for n in tracked if not n.startswith((".ci/", ".git"))}
    assert expected - names == set()
    assert {n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith("benchmarks/out")} == set()


def test_the_lowest_constraints_pin_every_runtime_floor_pyproject_states() -> None:
    """scripts/test runs the unit suite on constraints/lowest.txt: it must be exactly pyproject's floors."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = [*project["dependencies"], *(r for extra in ("cli", "fast", "dask", "redis")
                                           for r in project["optional-dependencies"][extra])]
    floors = {}
    for text in runtime:
        req = Requirement(text)
        (spec,) = req.specifier  # one `>=floor` each: a cap or a second bound would need its own pin here
        assert spec.operator == ">=", text
        floors[canonicalize_name(req.name)] = Version(spec.version)
    pins = {}
    for line in (ROOT / "constraints" / "lowest.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    assert pins == floors


# Imported by the package but installed by a declared requirement that always requires it.
_VIA = {
    "cloudpickle": "distributed",  # shannon_otel.dask: distributed's own serializer, a requirement of distributed
    # _otlp_grpc.py (status codes of a gRPC answer): grpcio, which opentelemetry-exporter-otlp requires through
    # its -proto-grpc exporter
    "grpc": "opentelemetry-exporter-otlp",
    # executor/_wave.py, under TYPE_CHECKING only (a TypeVar default for Python 3.11/3.12): never imported at run
    # time; opentelemetry-api requires it
    "typing_extensions": "opentelemetry-api",
}


def test_every_third_party_module_the_package_imports_is_a_declared_requirement() -> None:
    """requests was imported (OTLP/HTTP session hooks) but only arrived through the OTLP exporter, which
    stopped requiring it in 1.45.0: configure() with OTLP/HTTP failed with ModuleNotFoundError."""
    import ast
    import tomllib
    from importlib.metadata import packages_distributions

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {canonicalize_name(Requirement(r).name) for r in [
        *project["dependencies"], *(r for extra in ("cli", "fast", "dask", "redis")
                                    for r in project["optional-dependencies"][extra])]}
    imported = set()
    for path in (ROOT / "shannon_otel").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"shannon_otel"}
    providers = packages_distributions()
    undeclared = {
        module for module in third_party
        if not {canonicalize_name(d) for d in providers.get(module, [module])} & declared
        and _VIA.get(module) not in declared
    }
    assert undeclared == set()
