"""The sandbox as this test process's user sees it (root in CI): statuses, backend choice, the refusal to run
unisolated without an opt-in, and the plumbing of that opt-in. The hostile suite on every path, HumanEval and
throughput are in test_sandbox_paths.py."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infertune import tasks
from infertune.cli import app
from infertune.tasks.grading import hostile, isolation, sandbox
from infertune.tasks.grading.isolation import ENV_ALLOW_UNISOLATED, ENV_BACKEND, PROTECTIONS, SandboxUnavailable
from infertune.tasks.grading.sandbox import UID_BASE, SandboxConfig

ROOT = os.geteuid() == 0


def sandbox_processes() -> list[int]:
    """Every live process owned by any sandbox user id (root's runs)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                status = Path(f"/proc/{entry.name}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            uid = int(fields["Uid"].split()[0])
            if UID_BASE <= uid < UID_BASE + (1 << 24):
                found.append(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def no_leftovers():
    yield
    assert sandbox_processes() == [], "a sandboxed process outlived its run"


@pytest.fixture
def no_isolation(monkeypatch):
    """A machine where no backend works: every probe fails, as with user namespaces disabled and no root."""
    monkeypatch.setattr(sandbox, "probe", lambda backend: "user namespaces are disabled (simulated by the test)")
    monkeypatch.delenv(ENV_ALLOW_UNISOLATED, raising=False)
    monkeypatch.delenv(ENV_BACKEND, raising=False)
    sandbox._warn_unisolated.cache_clear()


def run(code: str, **kw) -> sandbox.SandboxResult:
    return sandbox.run(textwrap.dedent(code), config=SandboxConfig(**{"timeout_s": 3.0, **kw}))


def test_ordinary_programs_pass_and_fail():
    assert run("print('ok')").status == "passed"
    failed = run("assert 1 + 1 == 3, 'arithmetic'")
    assert failed.status == "failed" and "AssertionError: arithmetic" in failed.detail
    assert run("def f(:\n  pass").status == "failed"


def test_infinite_loop_times_out():
    result = run("while True:\n    pass", timeout_s=1.0)
    assert result.status == "timeout" and result.duration_s < 5


def test_fork_bomb_is_capped_and_cleaned_up():
    result = run("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """, timeout_s=2.0)
    assert result.status == "timeout"


def test_child_that_leaves_the_process_group_is_killed():
    result = run("""
        import os, time
        if os.fork() == 0:
            os.setsid()
            time.sleep(1000)
        print('parent done')
    """)
    assert result.status == "passed" and "parent done" in result.stdout


def test_memory_bomb_hits_the_memory_limit():
    result = run("x = bytearray(2 * 1024 ** 3)", memory_mb=256)
    assert result.status == "memory"
    grow = run("""
        chunks = []
        while True:
            chunks.append(bytearray(16 * 1024 ** 2))
    """, memory_mb=256)
    assert grow.status == "memory"


def test_huge_output_is_capped_and_the_program_killed():
    result = run("while True:\n    print('y' * 1000)", max_output_bytes=100_000)
    assert result.status == "error" and result.truncated
    assert len(result.stdout) <= 100_000


def test_the_program_sees_only_the_sandbox():
    repo = Path(__file__).resolve().parent
    result = run(f"""
        import os
        print(os.path.exists({str(repo)!r}), os.getcwd(), os.getpid(),
              len([p for p in os.listdir('/proc') if p.isdigit()]))
    """)
    assert result.status == "passed", result.stderr
    repo_visible, cwd, pid, processes = result.stdout.split()
    assert repo_visible == "False" and cwd == "/tmp/work"
    assert pid == "2" and int(processes) <= 3  # the run's init, the program (and the listing's own child, if any)


def test_a_python_installed_under_tmp_is_bound_above_the_private_tmp(tmp_path):
    """A virtual environment under /tmp (here: pytest's tmp_path) must stay visible above the run's private /tmp.

    The fresh environment reaches this one's packages through a .pth file, so that the driver can import
    infertune (whose task registry needs numpy) without installing anything."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    purelib = venv / "lib" / version / "site-packages"
    (purelib / "outer.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    src = Path(sandbox.__file__).resolve().parents[3]
    driver = ("from infertune.tasks.grading.sandbox import SandboxConfig, run\n"
              "r = run('import sys; print(sys.prefix)', config=SandboxConfig(site_packages=True))\n"
              "print(r.status, r.stdout.strip(), r.stderr[-500:])")
    done = subprocess.run([str(venv / "bin" / "python"), "-c", driver], env={**os.environ, "PYTHONPATH": str(src)},
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.split()[:2] == ["passed", str(venv)], done.stdout + done.stderr


def test_this_machine_isolates_and_results_say_how():
    caps = sandbox.capabilities()
    assert set(caps) == set(PROTECTIONS)
    assert caps["pid_namespace"] and caps["network_isolation"] and caps["read_only_filesystem"]
    assert caps["separate_user"] == ROOT
    result = run("print('ok')")
    assert result.isolated and result.backend in ("bwrap", "unshare")
    assert result.protections == tuple(name for name, on in caps.items() if on)


def test_without_isolation_model_code_is_refused_and_the_error_says_how(no_isolation, tmp_path):
    marker = tmp_path / "ran"
    program = f"open({str(marker)!r}, 'w').write('ran')"
    with pytest.raises(SandboxUnavailable) as refused:
        sandbox.run(program)
    message = str(refused.value)
    for needed in ("user namespaces are disabled", "apt-get install bubblewrap", "sysctl -w",
                   "--allow-unisolated", ENV_ALLOW_UNISOLATED):
        assert needed in message
    with pytest.raises(SandboxUnavailable):
        sandbox.run_many([program, program], workers=2)
    with pytest.raises(SandboxUnavailable):
        tasks.load("humaneval").rewards(*_one_humaneval())
    assert not marker.exists()
    assert not any(sandbox.capabilities()[name] for name in ("pid_namespace", "read_only_filesystem"))


def test_the_opt_in_runs_unisolated_by_config_and_by_environment(no_isolation, monkeypatch, tmp_path):
    with pytest.warns(RuntimeWarning, match="WITHOUT isolation"):
        by_config = sandbox.run("print('ran')", config=SandboxConfig(allow_unisolated=True))
    assert by_config.passed and not by_config.isolated and by_config.backend == "none"
    assert by_config.protections == ("resource_limits", "clean_environment", "process_tree_kill")
    monkeypatch.setenv(ENV_ALLOW_UNISOLATED, "1")
    assert sandbox.run("print('ran')").backend == "none"
    assert tasks.load("humaneval").rewards(*_one_humaneval()) == [1.0]


def test_backend_none_and_unknown_backends_are_explained(monkeypatch):
    monkeypatch.delenv(ENV_ALLOW_UNISOLATED, raising=False)
    with pytest.raises(SandboxUnavailable, match="--allow-unisolated"):
        sandbox.run("print(1)", config=SandboxConfig(backend="none"))
    monkeypatch.setenv(ENV_BACKEND, "docker")
    with pytest.raises(ValueError, match="not one of auto, bwrap, unshare, none"):
        sandbox.run("print(1)")


def test_a_requested_backend_that_does_not_work_is_an_error_not_a_fallback(monkeypatch):
    monkeypatch.setattr(sandbox, "probe", lambda backend: "bubblewrap (bwrap) is not installed")
    monkeypatch.setenv(ENV_ALLOW_UNISOLATED, "1")
    with pytest.raises(SandboxUnavailable, match="'bwrap' was asked for"):
        sandbox.run("print(1)", config=SandboxConfig(backend="bwrap"))


def test_the_opt_in_reaches_tasks_and_the_command_line(monkeypatch):
    monkeypatch.delenv(ENV_ALLOW_UNISOLATED, raising=False)
    assert tasks.load("humaneval", allow_unisolated=True).sandbox.allow_unisolated
    assert tasks.load("humaneval", sandbox_backend="unshare").sandbox.backend == "unshare"
    assert "allow_unisolated" not in tasks.load("humaneval", allow_unisolated=True).spec()
    result = CliRunner().invoke(app, ["--allow-unisolated", "doctor", "--no-self-test"])
    assert result.exit_code == 0, result.output
    assert isolation.unisolated_allowed(False)  # the flag set the environment variable for this process


def test_doctor_reports_protections_and_runs_the_hostile_self_test():
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    cases = len(hostile.CASES)
    assert "[x] pid_namespace" in result.output and f"{cases}/{cases} held" in result.output


def test_doctor_says_what_to_install_when_nothing_isolates(no_isolation):
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 1
    assert "install bubblewrap" in result.output and "hostile self-test: not run" in result.output


def test_root_runs_get_an_unused_id_that_the_user_namespace_maps(monkeypatch):
    monkeypatch.setattr(isolation, "_mapped_ranges", lambda name: [(0, 1 << 32)])
    assert UID_BASE <= isolation.fresh_uid() < UID_BASE + (1 << 24)
    monkeypatch.setattr(isolation, "_mapped_ranges", lambda name: [(0, 1), (1, 65536)])  # a rootless container
    assert all(1 + 32768 <= isolation.fresh_uid() < 65534 for _ in range(200))
    monkeypatch.setattr(isolation, "_mapped_ranges", lambda name: [(0, 1)])
    with pytest.raises(SandboxUnavailable, match="maps no spare user id"):
        isolation.fresh_uid()


def test_run_many_keeps_order_and_runs_in_parallel():
    programs = [f"import time\ntime.sleep(0.3)\nprint({i})" for i in range(4)]
    results = sandbox.run_many(programs, config=SandboxConfig(timeout_s=5), workers=4)
    assert [r.stdout.strip() for r in results] == ["0", "1", "2", "3"]
    assert all(r.status == "passed" for r in results)


def _one_humaneval():
    task = tasks.load("humaneval")
    problem = task.problems()[0]
    return [problem], [problem.reference]
