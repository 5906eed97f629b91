"""The sandbox on every path it takes: root (CI), and an ordinary user through bubblewrap and through the launcher's
own unshare construction. On each: the hostile suite holds, a run dies with its supervisor, HumanEval's canonical
solutions pass and wrong ones fail. What isolation costs against unisolated runs is printed (`-s`), not asserted:
a timed assert (at most 1.5x) failed CI at 2.25x on a machine whose speed drifts within minutes, and speed targets
belong in benchmarks, not in tests.

CI runs as root: the ordinary-user paths drop to uid 65534 through tests/unprivileged.py (setpriv, with the
interpreter made reachable in a private mount namespace). Run by an ordinary user, they run as that user, and the
root path skips. The bwrap path skips only where bubblewrap is not installed; .ci/run installs it, so it runs in CI.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sandbox_checks
from infertune.tasks.grading import cgroup, hostile
from infertune.tasks.grading.isolation import ENV_BACKEND
from unprivileged import USER, run_as_user

ROOT = os.geteuid() == 0
REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
CHECKS = str(TESTS / "sandbox_checks.py")
root_only = pytest.mark.skipif(not ROOT, reason="the root path needs root (CI runs as root)")
PATHS = [
    pytest.param("root", marks=root_only),
    pytest.param("bwrap", marks=pytest.mark.skipif(
        shutil.which("bwrap") is None, reason="bubblewrap is not installed (.ci/run installs it, so this runs in CI)")),
    "unshare",
]


@pytest.fixture
def scratch():
    """A home folder and a folder inside the repository that belong to the ordinary user: the places the hostile
    programs attack must be writable for that user, or isolation would not be what protects them."""
    base = REPO / f".sandbox-test-{secrets.token_hex(4)}"
    for sub in ("home", "repo"):
        (base / sub).mkdir(parents=True)
    if ROOT:
        for path in (base, base / "home", base / "repo"):
            os.chown(path, USER, USER)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def on_path(argv: list[str], scratch: Path, path: str, *, no_userns: bool = False, extra_env: dict | None = None
            ) -> dict:
    """Run ``python ARGV`` on ``path`` and return the JSON on its last line (with "_exit" and "_stderr").

    "root": as this (root) process's user, in the repository, backend unshare. "bwrap" or "unshare": as an ordinary
    user with that backend: uid 65534 when this process is root, else this process's user; home and repository
    are the scratch folders.
    """
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), ENV_BACKEND: "unshare" if path == "root" else path,
           **(extra_env or {})}
    if path != "root":
        env["HOME"] = str(scratch / "home")
    if ROOT and path != "root":
        done = run_as_user([sys.executable, *argv], env={**env, "PYTHONPATH": str(TESTS)}, cwd=str(scratch / "repo"),
                           keep=(str(scratch), str(TESTS)), no_userns=no_userns)
    else:
        pythonpath = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
        done = subprocess.run([sys.executable, *argv], env={**os.environ, **env, "PYTHONPATH": pythonpath},
                              cwd=REPO if path == "root" else scratch / "repo", capture_output=True, text=True,
                              timeout=600)
    lines = done.stdout.strip().splitlines()
    assert lines, f"no output (exit {done.returncode}): {done.stderr[-3000:]}"
    return json.loads(lines[-1]) | {"_exit": done.returncode, "_stderr": done.stderr[-3000:]}


def summary(figures: dict) -> dict:
    return {k: v for k, v in figures.items() if k not in ("outcomes", "_stderr")}


@pytest.mark.parametrize("path", PATHS)
def test_hostile_suite_holds(path, scratch):
    report = on_path(["-m", "infertune.tasks.grading.hostile"], scratch, path)
    failures = {o["case"]: o["problems"] for o in report["outcomes"] if not o["held"]}
    assert not failures, failures
    skipped = [o["case"] for o in report["outcomes"] if o["status"].startswith("skipped")]
    assert not skipped, f"cases that attacked nothing: {skipped}"
    assert report["cases"] == len(hostile.CASES) >= 22 and report["_exit"] == 0
    assert report["backend"] == ("unshare" if path == "root" else path)
    assert (report["uid"] == 0) == (path == "root") and ("separate_user" in report["protections"]) == (path == "root")
    print(f"hostile suite, {path}:", summary(report))


@pytest.mark.parametrize("path", PATHS)
def test_a_run_dies_with_its_supervisor(path, scratch):
    figures = on_path([CHECKS, "orphaned", "unshare" if path == "root" else path], scratch, path)
    assert figures["started"] and figures["left"] == [] and figures["stale_groups"] == [], figures


@pytest.mark.parametrize("path", PATHS)
def test_humaneval_passes_and_fails_as_it_should(path, scratch):
    figures = on_path(["-W", "ignore", CHECKS, "humaneval", "unshare" if path == "root" else path], scratch, path)
    assert figures["problems"] == 164
    assert figures["canonical_passed"] == 164 and figures["wrong_passed"] == 0, figures
    assert figures["exits_passed"] == 0, figures
    print(f"humaneval, {path}:", summary(figures))


@pytest.mark.parametrize("path", PATHS)
def test_the_view_holds_what_the_protections_claim(path, scratch):
    """/dev exactly as listed (bubblewrap's own /dev would add pts, ptmx and core), no virtual environment without
    site_packages, and hidden_home claimed only where no home folder is visible."""
    seen = on_path([CHECKS, "view"], scratch, path)
    assert seen["status"] == "passed", seen
    assert seen["dev"] == sorted(["null", "zero", "full", "random", "urandom", "tty", "shm", "fd", "stdin",
                                  "stdout", "stderr"]), seen["dev"]
    assert not (seen["in_venv"] and seen["venv"]), "the virtual environment is visible without site_packages"
    assert ("hidden_home" in seen["protections"]) == (seen["homes"] == []), seen


@pytest.fixture
def delegated_cgroup():
    """A memory cgroup folder handed to the ordinary user, as systemd's Delegate=yes or an administrator would."""
    base = cgroup.available() if ROOT else None
    if base is None:
        pytest.skip("no memory cgroup here to delegate (needs root and a writable memory cgroup)")
    folder = base.path / f"infertune-test-delegated-{secrets.token_hex(4)}"
    folder.mkdir()
    if base.version == 2:
        (folder / "cgroup.subtree_control").write_text("+memory")
    for name in ("", "cgroup.procs", "tasks", "cgroup.subtree_control", "cgroup.threads"):
        if (folder / name).exists():
            os.chown(folder / name, USER, USER)
    yield folder
    for child in folder.iterdir():
        if child.is_dir():
            child.rmdir()
    folder.rmdir()


@pytest.mark.parametrize("path", ["bwrap", "unshare"])
def test_a_delegated_memory_cgroup_caps_an_ordinary_users_runs(path, scratch, delegated_cgroup):
    """Without a cgroup, four processes under 128 MB each hold 320 MB; in a delegated one, the run is capped."""
    figures = on_path([CHECKS, "spread"], scratch, path, extra_env={cgroup.ENV_CGROUP: str(delegated_cgroup)})
    assert "memory_cgroup" in figures["protections"], figures
    assert figures["status"] == "memory", figures
    assert not [p for p in delegated_cgroup.iterdir() if p.is_dir()], "a run's cgroup was left behind"


def test_the_checks_detect_harm_when_nothing_isolates(scratch):
    """Run unisolated (as an ordinary user), the file, network and secret attacks succeed: the suite's checks see
    real harm, so their holding under isolation means something."""
    held = on_path(["-W", "ignore", CHECKS, "checks_bite"], scratch, "unshare")
    held = {k: v for k, v in held.items() if not k.startswith("_")}
    assert set(held) == set(sandbox_checks.MUST_FAIL_UNISOLATED)
    assert not any(held.values()), held


@root_only
def test_where_the_kernel_forbids_user_namespaces_model_code_is_refused(scratch):
    """A real machine state, not a simulation: the user cannot create user namespaces, so neither bwrap nor the
    launcher can isolate, and nothing is root. The program must not run until the opt-in."""
    marker = scratch / "repo" / "ran"
    figures = on_path([CHECKS, "refusal", str(marker)], scratch, "auto", no_userns=True)
    assert figures["refused"] and not figures["ran_before_opt_in"], figures
    assert "max_user_namespaces" in figures["message"] and "--allow-unisolated" in figures["message"]
    assert figures["opted_in_status"] == "passed" and not figures["opted_in_isolated"]
    assert figures["ran_after_opt_in"]


@root_only
def test_root_in_a_rootless_container_runs_programs_as_a_spare_mapped_id(scratch):
    """Root in a user namespace that maps 65536 ids (a rootless container's usual share) has no id near UID_BASE:
    the program runs as a spare id from the mapped range, and the hostile suite still holds."""
    home = scratch / "root-home"
    home.mkdir()
    done = run_as_user([sys.executable, "-m", "infertune.tasks.grading.hostile", "--backend", "unshare"],
                       env={"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}, cwd=str(REPO),
                       keep=(str(scratch),), user=None, id_map="0 0 1\n1 100000 65536")
    report = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    assert report, done.stderr
    # Name the cases that did not hold (a full-suite run once failed here with nothing but held=False to go on).
    failures = {o["case"]: (o["status"], o["seconds"], o["problems"]) for o in report["outcomes"] if not o["held"]}
    assert not failures, (failures, done.stderr)
    assert report["held"] and report["uid"] == 0 and "separate_user" in report["protections"], summary(report)
    assert not [o["case"] for o in report["outcomes"] if o["status"].startswith("skipped")]
