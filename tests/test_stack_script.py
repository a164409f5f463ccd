"""scripts/stack without servers: the apt install never starts a system service, the long build says
it is alive, and `status` prints the pinned version set that compose and the docs also pin."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import re
import stat
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_stack() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("shannon_stack_script", str(REPO / "scripts" / "stack"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # dataclasses resolve annotations through sys.modules
    loader.exec_module(module)
    return module


@pytest.fixture
def stack() -> ModuleType:
    return load_stack()


def fake_tool(bindir: Path, name: str, body: str) -> None:
    path = bindir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def fake_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stack: ModuleType) -> Path:
    """apt-get, sudo and systemctl replaced by scripts that log what they see; policy-rc.d in tmp_path."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls.log"
    policy = tmp_path / "policy-rc.d"
    # What a package's postinst does: ask policy-rc.d whether it may start the service.
    fake_tool(bindir, "apt-get", f"""echo "apt-get $*" >> {log}
if [ "$1" = install ]; then
  if [ -x {policy} ]; then {policy} prometheus start; echo "policy-rc.d says $?" >> {log}
  else echo "no policy-rc.d: service started" >> {log}; fi
  [ -n "$FAIL_APT" ] && exit 100
fi
exit 0
""")
    fake_tool(bindir, "sudo", 'shift; exec "$@"\n')  # `sudo -n CMD...` when not root
    fake_tool(bindir, "systemctl", f'echo "systemctl $*" >> {log}\n')
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(stack, "POLICY_RC_D", policy)
    monkeypatch.setattr(stack, "SYSTEMD_RUNNING", tmp_path / "no-systemd")
    return tmp_path


def calls(root: Path) -> list[str]:
    return (root / "calls.log").read_text().splitlines()


def test_apt_install_keeps_the_package_from_starting_its_service(stack: ModuleType, fake_system: Path) -> None:
    stack.apt_install(["prometheus"])
    assert "policy-rc.d says 101" in calls(fake_system)
    assert not any("service started" in c for c in calls(fake_system))
    assert not (fake_system / "policy-rc.d").exists(), "our policy-rc.d is removed after the install"


def test_apt_install_removes_its_policy_even_when_apt_fails(
    stack: ModuleType, fake_system: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIL_APT", "1")
    with pytest.raises(stack.StackError, match="apt-get"):
        stack.apt_install(["prometheus"])
    assert not (fake_system / "policy-rc.d").exists()


def test_apt_install_leaves_an_existing_policy_rc_d_alone(stack: ModuleType, fake_system: Path) -> None:
    policy = fake_system / "policy-rc.d"
    policy.write_text("#!/bin/sh\n# the image's own\nexit 101\n")
    policy.chmod(0o755)
    stack.apt_install(["prometheus"])
    assert policy.read_text() == "#!/bin/sh\n# the image's own\nexit 101\n"


def test_apt_install_disables_the_units_where_systemd_runs(
    stack: ModuleType, fake_system: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (fake_system / "systemd").mkdir()
    monkeypatch.setattr(stack, "SYSTEMD_RUNNING", fake_system / "systemd")
    stack.apt_install(["prometheus"])
    assert "systemctl disable --now prometheus.service" in calls(fake_system)
    assert "systemctl disable --now prometheus-node-exporter.service" in calls(fake_system)


def test_a_long_step_reports_progress(stack: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    # A step outliving PROGRESS_EVERY logs that it still runs (no wall-clock assertion: only that the
    # message appears for a step that takes several periods).
    monkeypatch.setattr(stack, "PROGRESS_EVERY", 0.05)
    out = stack.run([sys.executable, "-c", "import time; print('pkg/a', flush=True); time.sleep(0.5)"],
                    progress="compiling Jaeger")
    assert out == "pkg/a\n"
    assert "... compiling Jaeger:" in capsys.readouterr().err


def test_status_prints_the_version_set(stack: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SHANNON_STACK_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SHANNON_STACK_CACHE", str(tmp_path / "cache"))  # no binary: status must not build
    stack.cmd_status(stack.Settings.from_env(), [])
    out = capsys.readouterr().out
    assert "jaeger binary: not built" in out
    for component, pinned in stack.VERSION_SET.items():
        assert re.search(rf"^  {component}\s+{re.escape(pinned)}$", out, re.MULTILINE), out


def test_compose_docs_and_readme_pin_the_script_s_version_set(stack: ModuleType) -> None:
    compose = (REPO / "collector-config" / "docker-compose.yaml").read_text()
    images = dict(re.findall(r"^\s+image: ([\w./-]+):([\w.@:-]+)", compose, re.MULTILINE))
    assert images == {
        "jaegertracing/jaeger": stack.JAEGER_RELEASE,
        "otel/opentelemetry-collector-contrib": stack.COLLECTOR_VERSION,
        "prom/prometheus": f"v{stack.PROMETHEUS_VERSION}",
        "grafana/grafana": stack.GRAFANA_VERSION,
    }
    for doc in ("docs/stack.md", "README.md"):
        text = (REPO / doc).read_text()
        for version in (stack.JAEGER_RELEASE, stack.JAEGER_VERSIONS[0], stack.COLLECTOR_VERSION,
                        stack.PROMETHEUS_VERSION, stack.GRAFANA_VERSION):
            assert version in text, f"{doc} does not state {version}"


def rule_files(config: str) -> str:
    """The one rule_files entry of a Prometheus config (scripts/stack writes it JSON-quoted)."""
    (entry,) = re.findall(r"^rule_files:\n  - (.*)$", config, re.MULTILINE)
    return str(json.loads(entry))


def test_prometheus_loads_rules_linked_to_the_stack_s_own_jaeger(
    stack: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # collector-config/rules link alerts to the compose stack's :16686; the stack's Jaeger listens elsewhere.
    monkeypatch.setenv("SHANNON_STACK_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SHANNON_STACK_JAEGER_QUERY_PORT", "31686")
    monkeypatch.delenv("SHANNON_STACK_RULES_DIR", raising=False)
    cfg = stack.Settings.from_env()
    stack.write_rules(cfg)
    rules = (tmp_path / "state" / "rules" / "shannon-alerts.yml").read_text()
    urls = re.findall(r"^\s+traces_url: \"(.*)\"$", rules, re.MULTILINE)
    assert len(urls) == rules.count("traces_url") > 0
    assert all(u.startswith("http://127.0.0.1:31686/search?service=") for u in urls), urls
    assert rule_files(stack.prometheus_config(cfg)) == str(tmp_path / "state" / "rules" / "*.yml")


def test_a_rules_dir_of_the_user_s_own_is_loaded_as_it_is(
    stack: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    own = tmp_path / "mine"
    own.mkdir()
    (own / "mine.yml").write_text("groups: []\n")
    monkeypatch.setenv("SHANNON_STACK_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SHANNON_STACK_RULES_DIR", str(own))
    cfg = stack.Settings.from_env()
    stack.write_rules(cfg)
    assert sorted(p.name for p in own.iterdir()) == ["mine.yml"]
    assert not (tmp_path / "state" / "rules").exists()
    assert rule_files(stack.prometheus_config(cfg)) == str(own / "*.yml")


def test_validate_checks_every_collector_and_jaeger_config_of_the_repository(
    stack: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """`scripts/stack validate` ("checks the configs", docs/stack.md) ran `jaeger validate` on otelcol.yaml and
    jaeger.yaml only: an edit that broke collector-config/otelcol-tail-sampling.yaml was reported as valid."""
    log = tmp_path / "validated.log"
    fake_tool(tmp_path, "jaeger", f'echo "$3" >> {log}\n')  # jaeger validate --config FILE
    fake_tool(tmp_path, "promtool", "exit 0\n")
    monkeypatch.setenv("SHANNON_STACK_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(stack, "ensure_jaeger", lambda cfg: tmp_path / "jaeger")
    monkeypatch.setattr(stack, "ensure_prometheus", lambda: (tmp_path / "prometheus", tmp_path / "promtool"))
    monkeypatch.setattr(stack, "write_rules", lambda cfg: None)
    stack.cmd_validate(stack.Settings.from_env(), [])
    validated = {Path(line).name for line in log.read_text().splitlines()}
    configs = {path.name for path in (REPO / "collector-config").glob("*.yaml")} - {"docker-compose.yaml"}
    assert validated == configs
    assert "otelcol-tail-sampling.yaml" in configs


def test_the_app_job_a_user_uncomments_scrapes_this_host_under_the_script(
    stack: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/stack.md "Without a collector": serve the app's metrics for the commented-out `shannon-app` job of
    prometheus.yml. Uncommented, the script's Prometheus scraped `host.docker.internal:9464`, a name only
    Docker gives the host: the target was down while the app served its metrics on 127.0.0.1:9464."""
    monkeypatch.setenv("SHANNON_STACK_DIR", str(tmp_path / "state"))
    config = stack.prometheus_config(stack.Settings.from_env())
    job = config[config.index("# - job_name: shannon-app"):]
    assert re.findall(r"targets: \[(.*)\]", job) == ['"127.0.0.1:9464"']
