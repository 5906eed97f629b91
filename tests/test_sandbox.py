"""The sandbox as this test process's user sees it (root in CI): statuses, backend choice, the refusal to run
unisolated without an opt-in, and the plumbing of that opt-in. The hostile suite on every path, HumanEval and
throughput are in test_sandbox_paths.py."""

from __future__ import annotations

import json
import os
import shutil
import site
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infertune import tasks
from infertune.cli import app
from infertune.tasks.grading import cgroup, hostile, isolation, sandbox
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
    """A machine where no backend works: every probe fails, as with user namespaces disabled, no root and no
    bubblewrap."""
    monkeypatch.setattr(sandbox, "probe", lambda backend: "user namespaces are disabled (simulated by the test)")
    monkeypatch.setattr(sandbox, "_bwrap_path", lambda: None)
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


def test_where_bubblewrap_is_installed_the_refusal_does_not_say_to_install_it(no_isolation, monkeypatch):
    monkeypatch.setattr(sandbox, "_bwrap_path", lambda: "/usr/bin/bwrap")
    with pytest.raises(SandboxUnavailable) as refused:
        sandbox.run("print(1)")
    message = str(refused.value)
    assert "bubblewrap is installed but could not build its sandbox" in message
    assert "apt-get install bubblewrap" not in message and "--allow-unisolated" in message
    assert ("CAP_SYS_ADMIN" in message) == ROOT


def test_the_opt_in_runs_unisolated_by_config_and_by_environment(no_isolation, monkeypatch, tmp_path):
    with pytest.warns(RuntimeWarning, match="WITHOUT isolation"):
        by_config = sandbox.run("print('ran')", config=SandboxConfig(allow_unisolated=True))
    assert by_config.passed and not by_config.isolated and by_config.backend == "none"
    assert by_config.protections == ("resource_limits", "clean_environment", "private_keyring", "syscall_filter")
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


# --- the security review's findings ---------------------------------------------------------------------------------

LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall.restype = ctypes.c_long\n"


def test_system_v_ipc_is_refused_so_it_cannot_hold_memory_outside_the_limit():
    result = run(LIBC + textwrap.dedent("""
        size = ctypes.c_size_t(64 << 20)
        print("shmget", libc.shmget(0, size, 0o1600), ctypes.get_errno())
        print("msgget", libc.msgget(0, 0o1600), ctypes.get_errno())
        print("semget", libc.semget(0, 1, 0o1600), ctypes.get_errno())
    """), memory_mb=256)
    assert result.passed, result.stderr
    calls = {line.split()[0]: int(line.split()[1]) for line in result.stdout.splitlines()}
    assert calls == {"shmget": -1, "msgget": -1, "semget": -1}, result.stdout


def test_memfds_are_refused_so_they_cannot_hold_memory_outside_the_limit():
    result = run("""
        import os
        try:
            fd = os.memfd_create("hold")
            os.posix_fallocate(fd, 0, 8 << 20)
            print("held")
        except OSError as exc:
            print("refused", exc.errno)
    """)
    assert result.passed and result.stdout.startswith("refused"), result.stdout + result.stderr


def test_private_tmpfs_mounts_cap_their_number_of_files():
    """Empty folders use no tmpfs blocks but do use kernel memory: the size cap alone does not bound them."""
    result = run("""
        import os
        for top in ("/tmp", "/dev/shm"):
            n = 0
            try:
                while n < 100_000:
                    os.mkdir(f"{top}/d{n}")
                    n += 1
                print(top, n, "unbounded")
            except OSError as exc:
                print(top, n, exc.errno)
    """, timeout_s=30, tmpfs_inodes=500)
    assert result.passed, result.stderr
    for line in result.stdout.splitlines():
        top, made, how = line.split()
        assert int(made) < 500 and how == "28", line  # ENOSPC


def test_open_files_are_capped_low():
    result = run("import resource; print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    assert result.passed and int(result.stdout) <= 64


@pytest.mark.skipif(cgroup.available() is None, reason="no memory cgroup can be made here (needs root or a "
                    "delegated cgroup, see INFERTUNE_CGROUP)")
def test_memory_spread_over_processes_is_capped_by_the_memory_cgroup():
    """Each process stays under its address-space limit, together they would hold 600 MB: the cgroup stops them."""
    result = run("""
        import os, time
        children = []
        for _ in range(4):
            pid = os.fork()
            if pid == 0:
                block = bytearray(150 << 20)
                for i in range(0, len(block), 4096):
                    block[i] = 1
                time.sleep(1)
                os._exit(0)
            children.append(pid)
        print("held", sum(os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) == 0 for p in children) * 150)
    """, memory_mb=256, tmpfs_mb=16, timeout_s=20)
    assert "memory_cgroup" in result.protections
    held = int(result.stdout.split()[1]) if result.stdout.startswith("held") else 0
    assert result.status == "memory" or held <= 256 + 2 * 16, (result.status, result.stdout)


KEYRING_DRIVER = """
import ctypes, json, os, sys
from infertune.tasks.grading.sandbox import SandboxConfig, run
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
ADD_KEY, KEYCTL = {"x86_64": (248, 250), "aarch64": (217, 219)}[os.uname().machine]
SESSION = ctypes.c_long(-3)

def keys():
    buf = ctypes.create_string_buffer(4096)
    n = libc.syscall(KEYCTL, ctypes.c_long(11), SESSION, buf, ctypes.c_long(4096))
    ids = [int.from_bytes(buf.raw[i:i + 4], "little") for i in range(0, max(n, 0), 4)]
    out = []
    for key in ids:
        desc = ctypes.create_string_buffer(512)
        m = libc.syscall(KEYCTL, ctypes.c_long(6), ctypes.c_long(key), desc, ctypes.c_long(512))
        out.append(desc.raw[:max(m, 0)].decode(errors="replace"))
    return out

assert libc.syscall(KEYCTL, ctypes.c_long(1), b"infertune-test-session") > 0  # a session keyring of our own
secret = b"sk-" + os.urandom(8).hex().encode()
assert libc.syscall(ADD_KEY, b"user", b"api-token", secret, ctypes.c_size_t(len(secret)), SESSION) > 0
result = run(sys.argv[1], config=SandboxConfig(timeout_s=10))
print(json.dumps({"status": result.status, "stdout": result.stdout, "stderr": result.stderr[-500:],
                  "secret": secret.decode(), "after": keys(), "protections": result.protections}))
"""

KEYRING_ATTACK = LIBC + """
ADD_KEY, KEYCTL = {"x86_64": (248, 250), "aarch64": (217, 219)}[os.uname().machine]
buf = ctypes.create_string_buffer(4096)
n = libc.syscall(KEYCTL, ctypes.c_long(11), ctypes.c_long(-3), buf, ctypes.c_long(4096))
print("session keys", n, ctypes.get_errno())
for i in range(0, max(n, 0), 4):
    key = int.from_bytes(buf.raw[i:i + 4], "little")
    value = ctypes.create_string_buffer(4096)
    m = libc.syscall(KEYCTL, ctypes.c_long(11), ctypes.c_long(key), value, ctypes.c_long(4096))
    print("read", key, value.raw[:max(m, 0)])
print("planted", libc.syscall(ADD_KEY, b"user", b"planted-by-sandbox", b"x", ctypes.c_size_t(1), ctypes.c_long(-3)))
"""


@pytest.mark.skipif(os.uname().machine not in ("x86_64", "aarch64"), reason="system call numbers known for two")
def test_the_callers_session_keyring_is_out_of_reach_and_nothing_is_planted_in_it():
    done = subprocess.run([sys.executable, "-c", KEYRING_DRIVER, KEYRING_ATTACK], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(Path(sandbox.__file__).parents[3])})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == "passed", report
    assert report["secret"] not in report["stdout"], report["stdout"]
    assert not any("planted-by-sandbox" in key for key in report["after"]), report["after"]
    assert "private_keyring" in report["protections"]


FILTERED = LIBC + """
import errno, subprocess, sys, threading
nr = {"x86_64": dict(add_key=248, request_key=249, keyctl=250, shmget=29, msgget=68, semget=64, memfd_create=319),
      "aarch64": dict(add_key=217, request_key=218, keyctl=219, shmget=194, msgget=186, semget=190,
                      memfd_create=279)}[os.uname().machine]
args = {"add_key": (b"user", b"k", b"v", 1, -3), "request_key": (b"user", b"k", None, -3), "keyctl": (0, -3, 0),
        "shmget": (0, 4096, 0o1600), "msgget": (0, 0o1600), "semget": (0, 1, 0o1600), "memfd_create": (b"m", 0)}
for name, number in nr.items():
    result = libc.syscall(number, *[ctypes.c_long(a) if isinstance(a, int) else a for a in args[name]])
    print(name, result, errno.errorcode.get(ctypes.get_errno()))
print("unshare_user", libc.unshare(0x10000000), errno.errorcode.get(ctypes.get_errno()))
ran = []
thread = threading.Thread(target=lambda: ran.append(1))
thread.start()
thread.join()
child = subprocess.run([sys.executable, "-I", "-S", "-c", "print(6 * 7)"], capture_output=True, text=True)
print("thread", ran == [1], "child", child.stdout.strip())
"""


@pytest.mark.skipif(os.uname().machine not in ("x86_64", "aarch64"), reason="the filter knows two architectures")
def test_the_syscall_filter_refuses_keyrings_ipc_memfds_and_user_namespaces_but_not_threads():
    result = run(FILTERED)
    assert result.passed, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    for name in ("add_key", "request_key", "keyctl", "shmget", "msgget", "semget", "memfd_create"):
        assert lines[name] == "-1 ENOSYS", (name, lines[name])
    assert lines["unshare_user"] == "-1 EPERM"
    assert lines["thread"] == "True child 42"
    assert "syscall_filter" in result.protections


def test_exit_status_zero_is_no_pass_when_the_program_stopped_before_its_marker():
    early = "import sys\nsys.exit(0)\nprint('never')"
    done = sandbox.run(early, config=SandboxConfig(timeout_s=5), expect_marker=True)
    assert done.status == "failed" and "before" in done.detail, (done.status, done.detail)
    full = sandbox.run("import sys\nmarker = sys.stdin.readline()\nprint('out')\nprint(marker, end='')",
                       config=SandboxConfig(timeout_s=5), expect_marker=True)
    assert full.status == "passed" and full.stdout.strip() == "out", (full.status, full.stdout, full.detail)


SITE_DRIVER = """
import json, socket, sys
from infertune.tasks.grading.sandbox import SandboxConfig, run
secret_dir, sock_path = sys.argv[1], sys.argv[2]
server = socket.socket(socket.AF_UNIX)
server.bind(sock_path)
server.listen(1)
server.settimeout(0.5)
program = f'''
import os, socket
print("visible", os.path.exists({secret_dir!r}))
try:
    s = socket.socket(socket.AF_UNIX)
    s.connect({sock_path!r})
    print("connected")
except OSError as exc:
    print("refused", exc.errno)
'''
result = run(program, config=SandboxConfig(site_packages=True, timeout_s=10))
try:
    server.accept()
    reached = True
except OSError:
    reached = False
print(json.dumps({"status": result.status, "stdout": result.stdout, "stderr": result.stderr[-500:],
                  "reached": reached}))
"""


def test_site_packages_mounts_the_interpreters_site_packages_not_pythonpath_entries(tmp_path):
    """With PYTHONPATH pointing at a folder (say $HOME), site_packages=True used to mount it, sockets and all."""
    secret = tmp_path / "home"
    (secret / ".ssh").mkdir(parents=True)
    (secret / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    src = Path(sandbox.__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", SITE_DRIVER, str(secret), str(secret / "agent.sock")],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(secret)])})
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == "passed", report
    assert "visible False" in report["stdout"] and "connected" not in report["stdout"], report
    assert not report["reached"]


def test_the_installed_packages_are_importable_with_site_packages():
    result = run("import numpy, pytest\nprint('imported')", site_packages=True, timeout_s=30)
    assert result.passed and "imported" in result.stdout, result.stderr[-1000:]


@pytest.mark.skipif(not ROOT or shutil.which("bwrap") is None or shutil.which("setpriv") is None,
                    reason="needs root, bubblewrap and setpriv")
def test_root_without_cap_sys_admin_isolates_through_bubblewrap():
    """A container's root often lacks CAP_SYS_ADMIN: the launcher's own unshare fails there, bubblewrap works."""
    driver = ("from infertune.tasks.grading.sandbox import run\n"
              "r = run('import os; print(os.getpid())')\n"
              "print(r.status, r.backend, r.stdout.strip())")
    done = subprocess.run(["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin", sys.executable, "-c",
                           driver], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(sandbox.__file__).parents[3])})
    assert done.stdout.split() == ["passed", "bwrap", "2"], done.stdout + done.stderr[-2000:]


def test_unisolated_runs_claim_no_process_tree_kill(no_isolation):
    """A double-forked, setsid child whose parent killed the launcher escapes an unisolated run: not claimed."""
    with pytest.warns(RuntimeWarning, match="WITHOUT isolation"):
        result = sandbox.run("print('ran')", config=SandboxConfig(allow_unisolated=True))
    assert result.backend == "none" and "process_tree_kill" not in result.protections
    assert not sandbox.capabilities(SandboxConfig(allow_unisolated=True))["process_tree_kill"]


def test_dev_and_home_hold_what_the_protections_say():
    result = run(f"""
        import os, json
        homes = [h for h in ("/home", "/root", {os.path.expanduser("~")!r}) if os.path.exists(h)]
        print(json.dumps({{"dev": sorted(os.listdir("/dev")), "homes": homes}}))
    """)
    seen = json.loads(result.stdout)
    assert seen["dev"] == sorted(["null", "zero", "full", "random", "urandom", "tty", "shm", "fd", "stdin",
                                  "stdout", "stderr"])
    caps = sandbox.capabilities()
    assert caps["hidden_home"] == (seen["homes"] == []), seen["homes"]


def test_an_unencodable_program_is_an_error_of_its_own_not_of_the_batch():
    results = sandbox.run_many(["print(1)", "print('\ud800')"], config=SandboxConfig(timeout_s=5), workers=2)
    assert [r.status for r in results] == ["passed", "error"]
    assert "UTF-8" in results[1].detail


def test_the_hostile_bait_is_safe_on_a_shared_machine(tmp_path):
    with hostile.bait(repo=tmp_path) as b:
        assert all(s.getsockname()[0] == "127.0.0.1" for s in b.servers if s.family == socket.AF_INET)
        for place, folder in b.places.items():
            for entry in folder.iterdir():  # what others can list holds nothing they could write to
                if b.token in entry.name:
                    assert not entry.stat().st_mode & 0o002 and not entry.stat().st_mode & 0o004, entry
        canary = b.canary("repo")
        target = tmp_path / "outside.txt"
        target.write_text("not the canary's business")
        (canary / "link").symlink_to(target)
        problems = hostile.harm_done(b, sandbox.SandboxResult("passed", 0, "", "", 0.0, False, True))
        assert any("changed" in p for p in problems) and "not the canary" not in " ".join(problems)
