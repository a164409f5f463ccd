"""``import shannon_otel`` and running a Wave / Retry load neither the OTel SDK nor numpy.

Checked in a fresh interpreter (``sys.modules`` of this one already holds both).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

HEAVY = ("opentelemetry.sdk", "numpy")


def _loaded_after(code: str) -> list[str]:
    script = textwrap.dedent(code) + textwrap.dedent(f"""
        import sys
        print(sorted(m for m in sys.modules if m.split('.')[0] == 'numpy' or m.startswith({HEAVY[0]!r})))
    """)
    root = str(Path(__file__).resolve().parents[1])  # this checkout's package, not an installed one
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr
    loaded: list[str] = ast.literal_eval(out.stdout.strip().splitlines()[-1])  # a printed list of names
    return loaded


def test_importing_the_package_loads_neither_the_sdk_nor_numpy() -> None:
    assert _loaded_after("import shannon_otel") == []


def test_running_a_wave_and_a_retry_loads_neither() -> None:
    assert _loaded_after("""
        import asyncio
        from shannon_otel import Retry, Wave

        async def ok() -> int:
            return 1

        async def main() -> None:
            assert (await Wave("w", max_concurrency=2).run([ok(), ok()])).values() == [1, 1]
            assert await Retry(attempts=2).call(ok) == 1

        asyncio.run(main())
    """) == []


def test_the_heavy_parts_load_them_when_used() -> None:
    loaded = _loaded_after("""
        from shannon_otel import AnomalyDetector, configure
    """)
    assert any(m.startswith("opentelemetry.sdk") for m in loaded)
    assert "numpy" in loaded
