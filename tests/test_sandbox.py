"""Hostile programs: each gets the right status, leaves no process behind and leaves the machine's files untouched."""

from __future__ import annotations

import os
import secrets
import socket
import textwrap
from pathlib import Path

import pytest

from infertune.tasks.grading import sandbox
from infertune.tasks.grading.sandbox import SandboxConfig, UID_BASE

ISOLATED = sandbox.capabilities()["separate_user"]
needs_root = pytest.mark.skipif(not ISOLATED, reason="isolation needs root (CI runs as root)")


def sandbox_processes() -> list[int]:
    """Every live process owned by any sandbox user id."""
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


@needs_root
def test_writes_outside_the_sandbox_do_not_reach_the_machine(tmp_path):
    token = secrets.token_hex(8)
    host_tmp = Path("/tmp") / f"infertune-pwned-{token}"
    repo_file = Path.cwd() / f"pwned-{token}"
    shm = Path("/dev/shm") / f"pwned-{token}"
    result = run(f"""
        import os
        wrote = []
        for path in [{str(host_tmp)!r}, {str(repo_file)!r}, {str(shm)!r}, '/etc/pwned-{token}',
                     '/var/tmp/pwned-{token}', os.path.expanduser('~/pwned-{token}')]:
            try:
                with open(path, 'w') as fh:
                    fh.write('owned')
                wrote.append(path)
            except OSError:
                pass
        print(wrote)
    """)
    assert result.status == "passed"
    # Writes to world-writable places land in the run's private tmpfs and vanish with it.
    for path in (host_tmp, repo_file, shm, Path(f"/etc/pwned-{token}"), Path(f"/var/tmp/pwned-{token}")):
        assert not path.exists(), f"{path} was created on the machine"


@needs_root
def test_deleting_files_is_refused(tmp_path):
    victim_dir = Path.cwd() / f".victim-{secrets.token_hex(4)}"
    victim_dir.mkdir()
    victim = victim_dir / "keep.txt"
    victim.write_text("precious")
    try:
        result = run(f"""
            import os, shutil
            errors = 0
            for action in (lambda: os.remove({str(victim)!r}), lambda: shutil.rmtree({str(victim_dir)!r}),
                           lambda: os.remove('/etc/hostname'), lambda: shutil.rmtree({str(tmp_path)!r})):
                try:
                    action()
                except OSError:
                    errors += 1
            print(errors)
        """)
        assert result.status == "passed"
        assert victim.read_text() == "precious"
        assert Path("/etc/hostname").exists() and tmp_path.exists()
    finally:
        victim.unlink()
        victim_dir.rmdir()


@needs_root
def test_parent_environment_is_not_visible(monkeypatch):
    token = "sk-" + secrets.token_hex(16)
    monkeypatch.setenv("INFERTUNE_TEST_SECRET", token)
    result = run("""
        import os
        print(dict(os.environ))
        for pid in os.listdir('/proc'):
            if pid.isdigit():
                try:
                    print(open(f'/proc/{pid}/environ', 'rb').read())
                except OSError:
                    pass
    """)
    assert result.status == "passed"
    assert token not in result.stdout and token not in result.stderr
    assert "INFERTUNE_TEST_SECRET" not in result.stdout


@needs_root
def test_network_is_unreachable_even_on_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        result = run(f"""
            import socket
            socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'leak')
        """)
        assert result.status == "failed" and ("unreachable" in result.detail or "refused" in result.detail)
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()


def test_run_many_keeps_order_and_runs_in_parallel():
    programs = [f"import time\ntime.sleep(0.3)\nprint({i})" for i in range(4)]
    results = sandbox.run_many(programs, config=SandboxConfig(timeout_s=5), workers=4)
    assert [r.stdout.strip() for r in results] == ["0", "1", "2", "3"]
    assert all(r.status == "passed" for r in results)
