"""The thread team of the compiled sampling library under ThreadSanitizer (csrc/tests/test_team.cpp)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from soundalike.sampling import compiler

CSRC = compiler.SOURCES
TSAN = ["-std=c++17", "-O1", "-g", "-fsanitize=thread", "-pthread"]


def _tsan_compiler(tmp: Path) -> str:
    """A C++ compiler whose ThreadSanitizer builds and runs here, or skip (with the reason)."""
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    probe = tmp / "probe.cpp"
    probe.write_text("int main() { return 0; }\n")
    built = subprocess.run([cxx, *TSAN, str(probe), "-o", str(tmp / "probe")], check=False, capture_output=True, text=True)
    if built.returncode != 0:
        pytest.skip(f"{cxx} cannot build with -fsanitize=thread: {built.stderr.strip()[:200]}")
    ran = subprocess.run([str(tmp / "probe")], check=False, capture_output=True, text=True)
    if ran.returncode != 0:  # e.g. a kernel whose memory layout this TSan runtime does not support
        pytest.skip(f"ThreadSanitizer programs do not run here: {ran.stderr.strip()[:200]}")
    return cxx


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("tsan")
    cxx = _tsan_compiler(tmp)
    exe = tmp / "test_team"
    subprocess.run([cxx, *TSAN, str(CSRC / "tests" / "test_team.cpp"), str(CSRC / "team.cpp"), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    return exe


def _run(exe: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TSAN_OPTIONS": "halt_on_error=1 exitcode=66"}
    return subprocess.run([str(exe), *args], check=False, capture_output=True, text=True, env=env, timeout=300)


def test_team_runs_concurrent_jobs_of_every_size_without_a_race(driver):
    done = _run(driver)
    assert "ThreadSanitizer" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    assert "jobs of 1 to 64 parts on teams of 1 to 8 threads: ok" in done.stdout


def test_tsan_reports_a_racy_job(driver):
    """The sanitizer is watching: parts that write one variable are reported."""
    done = _run(driver, "race")
    assert done.returncode == 66 and "ThreadSanitizer: data race" in done.stderr
