"""Run untrusted, model-written Python in a separate, limited and isolated process.

What it does, for each program:
- a fresh process started through a small launcher (``_launcher.py``), in its own session and process group;
- as root (the CI and the usual container case): a new network namespace with no interfaces up (no network at all),
  a new mount namespace in which /tmp, /var/tmp, /run/lock and /dev/shm are fresh size-capped tmpfs mounts that
  vanish with the program, and a fresh, otherwise unused user id, so the program cannot write any file of the
  machine, cannot read other users' private files or other processes' environments, and its fork count is capped;
- limits on address space (memory), CPU seconds, processes, open files and file size (setrlimit);
- an environment with nothing inherited: PATH, HOME, LANG and nothing else; Python in isolated mode (-I);
- stdout and stderr captured up to a size cap; past it, or past the wall-clock timeout, every process of the run's
  user id is killed, including those that left the process group; after every run the same sweep leaves nothing.

What it does NOT protect against (read this before running code you would not run on your own laptop):
- kernel exploits, and anything that needs a hardened kernel boundary: this is not a VM, gVisor or seccomp jail;
- reading world-readable files of the machine (for example /etc/passwd, the Python standard library, the code of
  this package): files the machine's users can read, the program can read;
- using CPU, memory bandwidth and disk I/O up to its limits, which slows other work on the machine;
- when not run as root (or where namespaces are refused): no network isolation, no private /tmp and no separate user
  id; only the resource limits, the clean environment and the process-group kill apply. ``capabilities()`` says
  which protections are active, and ``SandboxResult.isolated`` records it per run.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

Status = Literal["passed", "failed", "timeout", "memory", "error"]

LAUNCHER = Path(__file__).with_name("_launcher.py")
LAUNCH_ERROR = 121
TMPFS_TARGETS = ("/tmp", "/var/tmp", "/run/lock", "/dev/shm")
UID_BASE = 1_000_000  # sandbox users live far above any real account


@dataclass(frozen=True)
class SandboxResult:
    """What happened to one program."""

    status: Status
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    truncated: bool
    isolated: bool
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class SandboxConfig:
    """Limits of one run; the defaults suit unit tests of short functions."""

    timeout_s: float = 10.0
    memory_mb: int = 512
    max_output_bytes: int = 1 << 20
    max_processes: int = 32
    max_file_mb: int = 16
    tmpfs_mb: int = 64
    site_packages: bool = False  # the program sees only the standard library unless this is set


def capabilities() -> dict[str, bool]:
    """Which protections this process can give: everything beyond rlimits needs root and namespaces."""
    root = os.geteuid() == 0
    return {"resource_limits": True, "clean_environment": True, "kill_process_tree": True,
            "network_isolation": root, "private_tmp": root, "separate_user": root}


def run(code: str, timeout_s: float = 10.0, memory_mb: int = 512, *, config: SandboxConfig | None = None,
        isolate: bool = True) -> SandboxResult:
    """Run ``code`` as a Python program under the sandbox and report how it ended."""
    cfg = config or SandboxConfig(timeout_s=timeout_s, memory_mb=memory_mb)
    root = os.geteuid() == 0
    uid = UID_BASE + secrets.randbelow(1 << 24) if root else None
    workdir = Path(tempfile.mkdtemp(prefix="infertune-sbx-"))
    try:
        code_path = workdir / "main.py"
        code_path.write_text(code)
        if uid is not None:
            # Without namespaces the program runs here, as its own user.
            os.chown(workdir, uid, uid)
            os.chown(code_path, uid, uid)
        home = "/tmp/work" if (isolate and root) else str(workdir)
        spec = {
            "code_path": str(code_path),
            "fallback_dir": str(workdir),
            "isolate": bool(isolate),
            "uid": uid,
            "python": sys.executable,
            "site_packages": cfg.site_packages,
            "tmpfs": list(TMPFS_TARGETS),
            # The interpreter may live where the program's user cannot go (for example under /root).
            "reachable": sorted({os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}),
            "tmpfs_mb": cfg.tmpfs_mb,
            "env": {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8",
                    "PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8"},
            "limits": {
                "RLIMIT_AS": cfg.memory_mb << 20,
                "RLIMIT_CPU": int(cfg.timeout_s) + 1,
                "RLIMIT_NPROC": cfg.max_processes,
                "RLIMIT_NOFILE": 256,
                "RLIMIT_FSIZE": cfg.max_file_mb << 20,
                "RLIMIT_CORE": 0,
            },
        }
        return _supervise(spec, cfg, uid, isolated=bool(isolate and root))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_many(programs: Iterable[str], *, config: SandboxConfig | None = None, workers: int | None = None,
             progress=None) -> list[SandboxResult]:
    """Run many programs in parallel, one sandbox each; results in input order.

    Threads suffice: each sandbox is its own process, and the threads only wait on pipes.
    """
    programs = list(programs)
    workers = workers or os.cpu_count() or 1
    results: list[SandboxResult | None] = [None] * len(programs)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(run, code, config=config): i for i, code in enumerate(programs)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if progress is not None:
                progress()
    return results  # type: ignore[return-value]


def _supervise(spec: dict, cfg: SandboxConfig, uid: int | None, isolated: bool) -> SandboxResult:
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(spec)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True, close_fds=True, env={}, cwd="/",
    )
    out, err = bytearray(), bytearray()
    truncated = timed_out = False
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    deadline = start + cfg.timeout_s
    open_streams = 2
    while open_streams and not truncated:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        for key, _ in sel.select(timeout=min(remaining, 0.5)):
            chunk = os.read(key.fileobj.fileno(), 65536)
            if not chunk:
                sel.unregister(key.fileobj)
                open_streams -= 1
                continue
            room = cfg.max_output_bytes - len(key.data)
            key.data.extend(chunk[: max(room, 0)])
            truncated = truncated or len(chunk) > room
    if timed_out or truncated:
        _stop(proc, uid)
    try:
        proc.wait(timeout=10.0)
    except subprocess.TimeoutExpired:
        _force_kill(proc, uid)
        proc.wait()
    sel.close()
    proc.stdout.close()
    proc.stderr.close()
    stdout = out.decode("utf-8", "replace")
    stderr = err.decode("utf-8", "replace")
    status, detail = _classify(proc.returncode, stderr, timed_out, truncated, cfg)
    return SandboxResult(status, proc.returncode, stdout, stderr, time.monotonic() - start, truncated, isolated,
                         detail)


def _classify(returncode: int | None, stderr: str, timed_out: bool, truncated: bool,
              cfg: SandboxConfig) -> tuple[Status, str]:
    if timed_out:
        return "timeout", f"killed after the {cfg.timeout_s:g} s wall-clock limit"
    if truncated:
        return "error", f"output exceeded {cfg.max_output_bytes} bytes; killed"
    if returncode == LAUNCH_ERROR and "sandbox-launch-error:" in stderr:
        return "error", stderr.strip().splitlines()[-1]
    if "MemoryError" in stderr:
        return "memory", f"address-space limit of {cfg.memory_mb} MB exceeded"
    if returncode == 0:
        return "passed", ""
    if returncode is not None and returncode > 128:
        sig = returncode - 128
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
        if sig == signal.SIGXCPU:
            return "timeout", f"CPU limit of {int(cfg.timeout_s) + 1} s exceeded"
        if sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGKILL):
            # C code that cannot allocate under the address-space limit dies this way.
            return "memory", f"killed by {name}, most likely at the {cfg.memory_mb} MB address-space limit"
        return "error", f"killed by {name}"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {returncode}"
    return "failed", last


def _stop(proc: subprocess.Popen, uid: int | None) -> None:
    """End a run early: kill the program's processes and let the launcher reap them and exit."""
    if uid is not None:
        for _ in range(200):
            pids = processes_of_user(uid)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.005)
    else:
        try:
            proc.send_signal(signal.SIGTERM)  # the launcher kills its child and sweeps the process group
        except ProcessLookupError:
            pass


def _force_kill(proc: subprocess.Popen, uid: int | None) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    _stop(proc, uid)


def processes_of_user(uid: int, include_zombies: bool = False) -> list[int]:
    """PIDs whose real user id is ``uid``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
        except OSError:
            continue
        if int(fields.get("Uid", "-1").split()[0]) == uid:
            if include_zombies or not fields.get("State", "").strip().startswith("Z"):
                found.append(int(entry.name))
    return found
