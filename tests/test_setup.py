"""`make test` and `make demo` do their own set-up (SPEC §7, newcomer), system packages included.

`scripts/system-packages.sh` is run here with a PATH of stand-in tools: `id` says who we
are, `apt-get` records how it was called and "installs" a package by adding its tools to
that PATH. The whole promise — a clean clone on a bare Debian machine passes `make test` —
is checked by CI itself: `.ci/run` runs in a fresh clone and only calls the make targets.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "system-packages.sh"
CI_RUN = REPO / ".ci" / "run"
# The tools each Debian package brings, as far as the script is concerned.
# (A stand-in `python3` that exits 0 is one that can create a virtual environment.)
PACKAGE_TOOLS = {
    "prometheus": ["promtool", "prometheus"],
    "docker-compose": ["docker-compose"],
    "prometheus-alertmanager": ["amtool"],
    "python3-venv": ["python3"],
}
FAKE_APT_GET = """#!{python}
import os, sys
from pathlib import Path
here = Path(sys.argv[0]).parent
with open(os.environ["APT_LOG"], "a") as log:
    log.write(os.environ.get("DEBIAN_FRONTEND", "-") + " " + " ".join(sys.argv[1:]) + "\\n")
tools = {tools!r}
if sys.argv[1] == "install" and not os.environ.get("APT_BROKEN"):
    for package in sys.argv[2:]:
        for tool in tools.get(package, []):
            (here / tool).write_text("#!/bin/sh\\n")
            (here / tool).chmod(0o755)
"""


class Machine:
    """A PATH with stand-ins for `id`, `apt-get` and the tools the tests need."""

    def __init__(self, root: Path, *, uid: int, tools: list[str], venv_support: bool = True):
        self.bin = root / "bin"
        self.bin.mkdir(parents=True)
        self.apt_log = root / "apt.log"
        self.venv = root / ".venv"
        self._tool("id", f"#!/bin/sh\necho {uid}\n")
        self._tool("python3", f"#!/bin/sh\nexit {0 if venv_support else 1}\n")
        self._tool("apt-get", FAKE_APT_GET.format(python=sys.executable, tools=PACKAGE_TOOLS))
        for tool in tools:
            self._tool(tool, "#!/bin/sh\n")

    def _tool(self, name: str, text: str) -> None:
        (self.bin / name).write_text(text)
        (self.bin / name).chmod(0o755)

    def run(self, *groups: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/bin/sh", str(SCRIPT), *groups],
            env={
                "PATH": str(self.bin),
                "PYTHON": str(self.bin / "python3"),
                "VENV": str(self.venv),
                "APT_LOG": str(self.apt_log),
                **env,
            },
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def apt_calls(self) -> list[str]:
        if not self.apt_log.exists():
            return []
        return self.apt_log.read_text().splitlines()


ALL_TOOLS = ["promtool", "prometheus", "amtool", "docker-compose"]


def test_everything_present_prints_nothing_and_never_calls_apt(tmp_path: Path) -> None:
    machine = Machine(tmp_path, uid=0, tools=ALL_TOOLS)
    result = machine.run("test")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert machine.apt_calls() == []


def test_as_root_installs_what_is_missing_after_one_update_then_nothing(tmp_path: Path) -> None:
    machine = Machine(tmp_path, uid=0, tools=["prometheus", "amtool"], venv_support=False)
    result = machine.run("test")
    assert result.returncode == 0, result.stderr
    assert machine.apt_calls() == [
        "noninteractive update -qq",
        "noninteractive install -y -qq --no-install-recommends "
        "python3-venv prometheus docker-compose",
    ]
    assert "python3-venv prometheus docker-compose" in result.stdout
    (machine.venv / "bin").mkdir(parents=True)  # what `python3 -m venv` then creates
    (machine.venv / "bin" / "python").symlink_to(sys.executable)
    again = machine.run("test")
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert len(machine.apt_calls()) == 2, "a second run must not call apt-get again"


def test_not_root_stops_with_one_line_naming_the_packages(tmp_path: Path) -> None:
    machine = Machine(tmp_path, uid=1000, tools=["prometheus", "amtool", "docker-compose"])
    result = machine.run("test")
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "missing promtool" in lines[0]
    assert "apt-get install prometheus" in lines[0]
    assert machine.apt_calls() == []


def test_demo_needs_only_venv_support(tmp_path: Path) -> None:
    without_venv = Machine(tmp_path / "a", uid=1000, tools=[], venv_support=False)
    result = without_venv.run("venv")
    assert result.returncode == 1
    assert "python3-venv" in result.stderr
    assert "prometheus" not in result.stderr

    with_venv = Machine(tmp_path / "b", uid=1000, tools=[])  # no promtool: not needed
    result = with_venv.run("venv")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_a_failed_install_is_an_error(tmp_path: Path) -> None:
    machine = Machine(tmp_path, uid=0, tools=["promtool", "prometheus", "amtool"])
    result = machine.run("test", APT_BROKEN="1")
    assert result.returncode == 1
    assert "still missing after apt-get install: docker-compose" in result.stderr


def test_make_targets_run_the_package_step_first() -> None:
    test = _dry_run("test")
    packages = next(i for i, line in enumerate(test) if "system-packages.sh test" in line)
    pytest_line = next(i for i, line in enumerate(test) if "-m pytest" in line)
    assert packages < pytest_line, test
    demo = _dry_run("demo", "VENV=/nonexistent/.venv")
    venv_check = next(i for i, line in enumerate(demo) if "system-packages.sh venv" in line)
    create = next(i for i, line in enumerate(demo) if "-m venv" in line)
    assert venv_check < create, demo
    assert not any("system-packages.sh test" in line for line in demo), "demo needs no Prometheus"


def _dry_run(*args: str) -> list[str]:
    result = subprocess.run(
        ["make", "-n", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=30
    )
    return result.stdout.splitlines()


def test_make_packages_on_this_machine_is_silent_and_fast() -> None:
    """Whatever `make test` needed is here now (it ran first), so the step does nothing."""
    started = time.monotonic()
    result = subprocess.run(
        ["make", "-s", "packages"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("MAKE")},
    )
    elapsed = time.monotonic() - started
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert elapsed < 5, f"`make packages` took {elapsed:.1f}s with nothing to do"


def test_ci_uses_the_make_targets_and_keeps_no_install_list_of_its_own() -> None:
    text = CI_RUN.read_text()
    assert "apt-get" not in text, ".ci/run must leave system packages to the Makefile"
    commands = [line.split()[:2] for line in text.splitlines() if line.startswith("make ")]
    assert commands == [["make", "packages"], ["make", "lint"], ["make", "test"]], commands


SKIPPING_TESTS = """
import pytest

def test_tool_missing():
    pytest.skip("promtool is not installed")

@pytest.mark.skipif(True, reason="no docker-compose")
def test_marked():
    pass

def test_fine():
    pass

@pytest.mark.xfail(reason="expected to fail")
def test_expected_failure():
    assert False
"""


def _pytest_on(path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(REPO / "tests")
    if ci is not None:
        env["CI"] = ci
    options = ["-q", "-p", "no:cacheprovider", "-p", "helpers.ci", "--rootdir", str(path.parent)]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *options, "-c", os.devnull, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_a_skip_fails_in_ci(
    tmp_path: Path,
) -> None:
    tests = tmp_path / "test_skipping.py"
    tests.write_text(SKIPPING_TESTS)
    local = _pytest_on(tests, ci=None)
    assert local.returncode == 0, local.stdout
    assert "1 passed, 2 skipped, 1 xfailed" in local.stdout
    in_ci = _pytest_on(tests, ci="true")
    assert in_ci.returncode == 1, in_ci.stdout
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in in_ci.stdout
    assert "nothing may be skipped: Skipped: promtool is not installed" in in_ci.stdout


def test_every_tool_the_tests_look_up_is_one_the_package_step_provides() -> None:
    """A test needing a new system tool must add it to scripts/system-packages.sh."""
    lookup = re.compile(r"""(?:find_binary|shutil\.which)\("([\w.-]+)\"""")
    wanted = {
        name: path.name
        for path in sorted((REPO / "tests").rglob("*.py"))
        for name in lookup.findall(path.read_text())
    }
    # python3 is the given; `docker compose` is accepted in place of docker-compose.
    exempt = {"python3", "docker"}
    script = SCRIPT.read_text()
    for name, where in wanted.items():
        if name not in exempt:
            assert f"has {name} " in script, (
                f"{where} needs {name}, which make test does not install"
            )
    assert {"promtool", "prometheus", "amtool", "docker-compose"} <= set(wanted)
