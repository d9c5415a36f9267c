"""`./run.sh test`, the README's test command, sets up the programs the tests need (issue 22).

run.sh runs with a PATH that holds only the basic commands it calls plus fakes: no apt-get, no sudo,
a missing chromium. Where nothing can install it, ONE line says what to install and pytest never
starts; where apt-get can (as root, or through sudo), it is called with Debian's package names.
Also the contract between the README and CI: one Quick start block of two commands, and .ci/run
runs the README's test command line itself.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASICS = ("dirname", "env", "cat")  # what run.sh calls before its tests start (besides bash built-ins)
PACKAGES = "chromium chromium-driver g++"


def fake(bin_dir: Path, name: str, body: str = "exit 0") -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def machine(tmp_path: Path, present=("chromedriver", "g++"), root=True, apt=None, sudo=False) -> Path:
    """A bin folder to be the whole PATH. apt: the fake apt-get's body (None: no apt-get)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in BASICS:
        (bin_dir / name).symlink_to(shutil.which(name))
    for name in present:
        fake(bin_dir, name)
    fake(bin_dir, "id", "echo 0" if root else "echo 1000")
    if apt is not None:
        fake(bin_dir, "apt-get", f'echo "apt-get $*" >> {tmp_path}/calls\n{apt}')
    if sudo:
        fake(bin_dir, "sudo", f'echo "sudo" >> {tmp_path}/calls\nexec "$@"')
    return bin_dir


def run_sh(bin_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("bash"), str(ROOT / "run.sh"), *args], capture_output=True, text=True,
                          env={"PATH": str(bin_dir)}, timeout=60)


def installs(bin_dir: Path) -> str:
    """A fake apt-get install that puts the three commands on the PATH."""
    made = "\n".join(f"printf '#!/bin/sh\\n' > {bin_dir}/{n}; {shutil.which('chmod')} +x {bin_dir}/{n}"
                     for n in ("chromium", "chromedriver", "g++"))
    return f'[ "$1" = install ] && {{\n{made}\n}}\nexit 0'


def test_cannot_install_stops_before_pytest_with_one_line(tmp_path):
    bin_dir = machine(tmp_path)  # root, but no apt-get (and no sudo)
    res = run_sh(bin_dir, "test", "tests/test_that_would_fail_if_pytest_ran.py")
    assert res.returncode != 0
    assert res.stdout == ""  # pytest printed nothing: it never started
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert "need chromium (" in lines[0] and f"apt-get install {PACKAGES}" in lines[0]


def test_not_root_without_sudo_does_not_try_apt(tmp_path):
    bin_dir = machine(tmp_path, present=("chromium", "chromedriver"), root=False, apt="exit 0")
    res = run_sh(bin_dir, "test")
    assert res.returncode != 0 and res.stdout == ""
    assert len(res.stderr.splitlines()) == 1 and "need g++ (" in res.stderr
    assert not (tmp_path / "calls").exists()


def test_root_installs_with_apt_get(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir = machine(tmp_path, present=(), apt=installs(bin_dir))
    res = run_sh(bin_dir, "tools")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "calls").read_text().splitlines() == [
        "apt-get update -q", f"apt-get install -y -q --no-install-recommends {PACKAGES}"]


def test_user_installs_through_sudo(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir = machine(tmp_path, present=(), root=False, apt=installs(bin_dir), sudo=True)
    res = run_sh(bin_dir, "tools")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "calls").read_text().splitlines() == [
        "sudo", "apt-get update -q", "sudo", f"apt-get install -y -q --no-install-recommends {PACKAGES}"]


def test_failed_install_ends_with_the_line(tmp_path):
    bin_dir = machine(tmp_path, apt='[ "$1" = install ] && exit 100; exit 0')
    res = run_sh(bin_dir, "test")
    assert res.returncode != 0 and res.stdout == ""
    assert res.stderr.splitlines()[-1].startswith("run.sh: the tests need chromium (")


def test_present_tools_cost_nothing(tmp_path):
    bin_dir = machine(tmp_path, present=("chromium", "chromedriver", "g++"), apt="exit 0")
    res = run_sh(bin_dir, "tools")
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    assert not (tmp_path / "calls").exists()


def test_readme_quick_start_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```\w*\n(.*?)```", quick, re.S)
    assert len(blocks) == 1
    assert blocks[0].splitlines() == ["./run.sh demo", "./run.sh test"]
    assert "./run.sh test" in (ROOT / ".ci" / "run").read_text().splitlines()
