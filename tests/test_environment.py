"""environment.yml names the same dependencies, with the same bounds, as pyproject.toml."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: a test dependency (pyproject's [test] extra)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

#: conda-forge package name → PyPI name, where they differ.
CONDA_TO_PYPI = {"redis-py": "redis"}
#: conda packages that are not Python dependencies of the project.
NOT_PYTHON_DEPS = {"python", "pip"}

_CONDA_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*$")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_deps() -> dict[str, SpecifierSet]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    out: dict[str, SpecifierSet] = {}
    for text in reqs:
        req = Requirement(text)
        if norm(req.name) == norm(project["name"]):
            continue  # self-reference such as livestream[notebook,redis]
        out[norm(req.name)] = req.specifier
    return out


@pytest.fixture(scope="module")
def env() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def env_deps(env: dict) -> tuple[dict[str, SpecifierSet], list[str]]:
    deps: dict[str, SpecifierSet] = {}
    pip: list[str] = []
    for item in env["dependencies"]:
        if isinstance(item, dict):
            assert set(item) == {"pip"}, item
            pip += item["pip"]
            continue
        m = _CONDA_SPEC.match(item)
        assert m, item
        name, spec = m.groups()
        name = CONDA_TO_PYPI.get(name, name)
        if name in NOT_PYTHON_DEPS:
            continue
        assert norm(name) not in deps, f"{name} listed twice"
        deps[norm(name)] = SpecifierSet(spec.replace(" ", ""))
    for line in pip:
        if line.startswith("-"):
            continue
        req = Requirement(line)
        assert norm(req.name) not in deps, f"{req.name} listed twice"
        deps[norm(req.name)] = req.specifier
    return deps, pip


def test_environment_yml_is_a_conda_environment(env: dict) -> None:
    assert env["name"] == "livestream"
    assert "conda-forge" in env["channels"]
    assert isinstance(env["dependencies"], list)
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "pip" in conda, "a pip section needs pip in the conda dependencies"
    python = [d for d in conda if _CONDA_SPEC.match(d).group(1) == "python"]
    assert len(python) == 1


def test_python_version_matches_requires_python(env: dict) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    spec = next(_CONDA_SPEC.match(d).group(2) for d in env["dependencies"]
                if isinstance(d, str) and _CONDA_SPEC.match(d).group(1) == "python")
    assert SpecifierSet(spec) == SpecifierSet(project["requires-python"])


def test_same_dependencies_as_pyproject(env: dict) -> None:
    want = pyproject_deps()
    got, _ = env_deps(env)
    assert sorted(set(want) - set(got)) == [], "in pyproject.toml, missing from environment.yml"
    assert sorted(set(got) - set(want)) == [], "in environment.yml, missing from pyproject.toml"
    differ = {n: (str(want[n]), str(got[n])) for n in want if want[n] != got[n]}
    assert differ == {}, "version bounds differ (pyproject, environment.yml)"


def test_the_package_itself_is_installed_editable(env: dict) -> None:
    _, pip = env_deps(env)
    assert "-e ." in pip


# -- the machinery the suite runs on ------------------------------------------------------------


def test_ci_runs_scripts_test_and_fails_on_no_tests(tmp_path: Path) -> None:
    """scripts/test runs its setup hooks with the interpreter it was given, then pytest
    with that interpreter, and turns "no tests ran" into a failure. A hook of the test's
    own stands in for scripts/test.d (which builds and tests the JS client)."""
    import os
    import subprocess

    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in ci
    assert "scripts/test" in ci
    for script in (ROOT / ".ci" / "run", ROOT / "scripts" / "test"):
        assert os.access(script, os.X_OK), f"{script} is not executable"
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    seen = tmp_path / "hook-saw"
    (hooks / "10-probe.sh").write_text(f'printf "%s" "$PYTHON" > "{seen}"\n')
    env = {**os.environ, "LIVESTREAM_SKIP_INSTALL": "1", "LIVESTREAM_SKIP_APT": "1", "CI": "",
           "PYTHON": sys.executable, "LIVESTREAM_TEST_HOOKS": str(hooks)}
    res = subprocess.run(
        ["bash", str(ROOT / "scripts" / "test"), str(Path(__file__)), "-q",
         "-p", "no:cacheprovider", "-k", "no_test_is_named_like_this"],
        capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "no tests" in res.stderr
    assert seen.read_text() == sys.executable  # the hook ran, with our interpreter
    assert f"scripts/test: {sys.executable} -m pytest" in res.stderr  # and so did pytest


@pytest.mark.redis
def test_redis_server_fixture_answers_and_stops(redis_server) -> None:
    assert redis_server.ping()
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    redis_server.stop()
    assert not redis_server.ping()
    redis_server.start()
    assert redis_server.ping()


@pytest.mark.browser
def test_chromium_renders_a_page_headless(chromium_path, chromium_args, tmp_path) -> None:
    import subprocess

    page = tmp_path / "page.html"
    page.write_text("<html><body><p id=x>live</p><script>"
                    "document.getElementById('x').textContent += 'stream'</script></body></html>")
    res = subprocess.run(
        [chromium_path, *chromium_args, f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "livestream" in res.stdout
