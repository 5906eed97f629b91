"""Run untrusted, model-written Python in a separate, limited and isolated process.

Every program runs in a fresh process, started through a small launcher (``_launcher.py``), and gets:
- its own PID namespace, whose init is the launcher's: when the program ends, on timeout or on output overflow,
  the init exits and the kernel kills every process the program left, even those that called setsid or double
  forked; the run also dies when the process that started it dies;
- its own network namespace (no network, not even the machine's loopback), IPC and UTS namespaces;
- a new root file system holding only the system directories and the Python installation, read-only; home
  directories (unless the interpreter lives in one), the repository and everything else are absent; /tmp (with the
  work directory) and /dev/shm are private tmpfs mounts capped in bytes and in files; /dev holds only null, zero,
  full, random, urandom and tty (``fsview.py``);
- limits on each process's address space, CPU seconds, processes, open files and file size (setrlimit), and, where
  this machine allows a memory cgroup, one cap on all of the run's memory together (``cgroup.py``);
- a fresh session keyring, no_new_privs, and a seccomp filter refusing the kernel keyring, System V IPC, memfds and
  new user namespaces (``syscall_filter.py``);
- an environment with nothing inherited: PATH, HOME, LANG and nothing else; Python in isolated mode (-I).

How (``isolation.py``): as root, the launcher builds this itself with namespaces and also runs the program as a
fresh, otherwise unused user id; root without CAP_SYS_ADMIN (a container) goes through bubblewrap. As an ordinary
user, through unprivileged user namespaces: with bubblewrap (``bwrap``) when it is installed, otherwise by the
launcher itself. When neither works, ``run`` and ``run_many`` raise ``SandboxUnavailable``, saying why and how to
enable isolation, unless the caller opted in to unisolated runs; those get only the limits, the clean environment,
the keyring and the filter. ``capabilities()`` says which protections apply on this machine, and every
``SandboxResult`` records its backend and the protections it ran under.

Unit tests pass on exit status 0 only with ``expect_marker`` (``harness.py``): the program must also print the
random marker handed to it on its standard input, which a program that exits early never does.

What it does NOT protect against (read this before running code you would not run on your own laptop):
- kernel exploits, and anything that needs a hardened kernel boundary: this is not a VM or gVisor, and the seccomp
  filter is a short deny list, not an allow list; user namespaces expose more kernel code than a plain process sees;
- reading what the system directories hold (for example /etc/passwd and the Python standard library), and
  connecting to a socket file inside a visible directory;
- using CPU, memory bandwidth and disk I/O up to its limits, which slows other work on the machine; without a memory
  cgroup, memory is capped per process only (the README gives the bound).
"""

from __future__ import annotations

import functools
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
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

from infertune.tasks.grading import cgroup, syscall_filter
from infertune.tasks.grading.fsview import WORKDIR, bwrap_command, view, visible_homes
from infertune.tasks.grading.isolation import (HOW_TO_OPT_IN, PROTECTIONS, UID_BASE, Applied, SandboxUnavailable,
                                               fresh_uid, kernel_obstacles, protections, requested_backend,
                                               unavailable_message, unisolated_allowed)

Status = Literal["passed", "failed", "timeout", "memory", "error"]

LAUNCHER = Path(__file__).with_name("_launcher.py")
LAUNCH_ERROR = 121
PROBE_PROGRAM = "print('ok')"
OPEN_FILES = 64  # each open pipe or socket can hold kernel memory that no address-space limit counts

__all__ = ["SandboxConfig", "SandboxResult", "SandboxUnavailable", "run", "run_many", "capabilities",
           "choose_backend", "probe"]


@dataclass(frozen=True)
class SandboxResult:
    """What happened to one program, and under which protections it ran."""

    status: Status
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    truncated: bool
    isolated: bool  # ran in namespaces (bwrap or unshare), not merely under limits
    detail: str = ""
    backend: str = "none"
    protections: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class SandboxConfig:
    """Limits of one run and how to isolate it; the defaults suit unit tests of short functions."""

    timeout_s: float = field(default=10.0, metadata={"help": "Wall-clock limit of one program, in seconds."})
    memory_mb: int = field(default=512, metadata={
        "help": "Address-space limit of each process, in MB; where a memory cgroup can be made, the whole run's "
                "memory is also capped, at this plus twice tmpfs_mb."})
    max_output_bytes: int = field(default=1 << 20, metadata={"help": "Stdout or stderr past this kills the run."})
    max_processes: int = field(default=32, metadata={"help": "Processes the program may run at once."})
    max_file_mb: int = field(default=16, metadata={"help": "Largest file the program may write, in MB."})
    tmpfs_mb: int = field(default=64, metadata={"help": "Size of each private tmpfs (/tmp, /dev/shm), in MB."})
    tmpfs_inodes: int = field(default=4096, metadata={
        "help": "Files and folders each private tmpfs may hold (each costs kernel memory, but no tmpfs bytes)."})
    site_packages: bool = field(default=False, metadata={
        "help": "Let the program import the interpreter's installed packages (read-only); by default only the "
                "standard library."})
    backend: str = field(default="auto", metadata={
        "help": "auto (bwrap for ordinary users when installed, else unshare), bwrap, unshare, or none "
                "(no isolation; needs allow_unisolated). $INFERTUNE_SANDBOX_BACKEND overrides auto."})
    allow_unisolated: bool = field(default=False, metadata={
        "help": "Run model code with limits only when no isolation works here, instead of refusing "
                "(also: infertune --allow-unisolated, or INFERTUNE_ALLOW_UNISOLATED=1)."})


def run(code: str, timeout_s: float = 10.0, memory_mb: int = 512, *, config: SandboxConfig | None = None,
        expect_marker: bool = False) -> SandboxResult:
    """Run ``code`` as a Python program under the sandbox and report how it ended.

    With ``expect_marker`` the program reads a random marker from its standard input and must print it, on a line
    of its own, to pass: exit status 0 alone is then no pass (``harness.py`` writes such programs). The marker line
    is removed from the result's stdout. Raises SandboxUnavailable when no isolation works here and unisolated runs
    were not allowed.
    """
    cfg = config or SandboxConfig(timeout_s=timeout_s, memory_mb=memory_mb)
    return _execute(code, cfg, choose_backend(cfg), expect_marker)


def run_many(programs: Iterable[str], *, config: SandboxConfig | None = None, workers: int | None = None,
             progress=None, expect_marker: bool = False) -> list[SandboxResult]:
    """Run many programs in parallel, one sandbox each; results in input order (``expect_marker`` as in ``run``).

    Threads suffice: each sandbox is its own process, and the threads only wait on pipes. The backend is chosen
    (and refused, when there is none) once, before any program runs.
    """
    cfg = config or SandboxConfig()
    programs = list(programs)
    backend = choose_backend(cfg)
    workers = workers or os.cpu_count() or 1
    results: list[SandboxResult | None] = [None] * len(programs)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(_execute, code, cfg, backend, expect_marker): i for i, code in enumerate(programs)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if progress is not None:
                progress()
    return results  # type: ignore[return-value]


def _root() -> bool:
    return os.geteuid() == 0


@functools.lru_cache(maxsize=None)
def _bwrap_path() -> str | None:
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=None)
def probe(backend: str) -> str | None:
    """None when ``backend`` isolates programs on this machine, else why not. Runs one trial program, once."""
    if backend == "bwrap" and _bwrap_path() is None:
        return "bubblewrap (bwrap) is not installed"
    if backend == "unshare" and not _root():
        obstacles = kernel_obstacles()
        if obstacles:
            return "; ".join(obstacles)
    try:
        result = _execute(PROBE_PROGRAM, SandboxConfig(timeout_s=20.0), backend)
    except SandboxUnavailable as exc:
        return str(exc)
    if result.passed and result.stdout.strip() == "ok":
        return None
    return f"a trial run failed ({result.status}): {result.detail or result.stderr.strip()[-300:]}"


def choose_backend(config: SandboxConfig) -> str:
    """The backend runs use: the one asked for, or with "auto" the first that works here (see ``_first_working``).
    Without a working one, "none" if unisolated runs were allowed, else SandboxUnavailable."""
    wanted = requested_backend(config.backend)
    allowed = unisolated_allowed(config.allow_unisolated)
    if wanted == "none":
        if allowed:
            return "none"
        raise SandboxUnavailable(f"sandbox backend 'none' runs model-written code without isolation. {HOW_TO_OPT_IN}")
    backend, failures = _first_working(wanted)
    if backend is not None:
        return backend
    if wanted == "auto" and allowed:
        _warn_unisolated()
        return "none"
    raise SandboxUnavailable(unavailable_message(failures, requested=None if wanted == "auto" else wanted,
                                                 root=_root(), bwrap_installed=_bwrap_path() is not None))


def _first_working(wanted: str) -> tuple[str | None, dict[str, str]]:
    """The first backend that works among those ``wanted`` allows, and why each one before it does not. Ordinary
    users try bubblewrap first; root its own construction, then bubblewrap, which works for root without
    CAP_SYS_ADMIN (a container's root, usually) where unshare(2) of a mount namespace does not."""
    candidates = [wanted] if wanted != "auto" else (["unshare", "bwrap"] if _root() else ["bwrap", "unshare"])
    failures = {}
    for backend in candidates:
        why = probe(backend)
        if why is None:
            return backend, failures
        failures[backend] = why
    return None, failures


@functools.lru_cache(maxsize=1)
def _warn_unisolated() -> None:
    """Once per process: the caller opted in, but a run without isolation should never go unnoticed."""
    warnings.warn("model-written code runs WITHOUT isolation (opted in): only resource limits, a clean environment, "
                  "a fresh keyring and the syscall filter apply. Run `infertune doctor` to see how to enable "
                  "isolation.", RuntimeWarning, stacklevel=4)


def capabilities(config: SandboxConfig | None = None) -> dict[str, bool]:
    """Which protections a run with ``config`` gets on this machine (every name in ``isolation.PROTECTIONS``).

    When no isolation works, these are the protections of an opted-in unisolated run.
    """
    cfg = config or SandboxConfig()
    wanted = requested_backend(cfg.backend)
    backend = (_first_working(wanted)[0] if wanted != "none" else None) or "none"
    have = set(protections(backend, _root(), _applied(cfg, backend, _memory_base(backend) is not None)))
    return {name: name in have for name in PROTECTIONS}


def _applied(cfg: SandboxConfig, backend: str, cgroup_made: bool) -> Applied:
    """The protections that depend on this machine and this configuration, not on the backend alone."""
    return Applied(memory_cgroup=cgroup_made, syscall_filter=syscall_filter.program() is not None,
                   private_keyring=syscall_filter.keyctl_number() is not None,
                   hidden_home=not visible_homes(view(cfg.site_packages)))


def _memory_base(backend: str) -> cgroup.Base | None:
    """Where runs make their memory cgroup: isolated runs only, since an unisolated program could leave its group."""
    return cgroup.available() if backend in ("bwrap", "unshare") else None


def run_memory_mb(cfg: SandboxConfig) -> int:
    """The memory cgroup's cap on a whole run: a process at its address-space limit, and both tmpfs mounts full."""
    return cfg.memory_mb + 2 * cfg.tmpfs_mb


def _limits(cfg: SandboxConfig) -> dict[str, int]:
    return {
        "RLIMIT_AS": cfg.memory_mb << 20,
        "RLIMIT_CPU": int(cfg.timeout_s) + 1,
        "RLIMIT_NPROC": cfg.max_processes,
        "RLIMIT_NOFILE": OPEN_FILES,
        "RLIMIT_FSIZE": cfg.max_file_mb << 20,
        "RLIMIT_CORE": 0,
        "RLIMIT_MSGQUEUE": 0,  # POSIX message queues hold kernel memory outside the address space
    }


def _environment(home: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8"}


def _execute(code: str, cfg: SandboxConfig, backend: str, expect_marker: bool = False) -> SandboxResult:
    """One run through ``backend``; the program reaches the launcher through a memfd, never the disk."""
    try:
        data = code.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate: this program cannot run; the others of a batch can
        return SandboxResult("error", None, "", "", 0.0, False, backend != "none",
                             f"the program is not valid UTF-8 text ({exc.reason} at position {exc.start}); not run",
                             backend, ())
    root = _root()
    tree = view(cfg.site_packages)
    bpf = syscall_filter.program()
    spec = {"python": tree.python, "site_packages": cfg.site_packages, "workdir": WORKDIR,
            "env": _environment(WORKDIR), "limits": _limits(cfg), "tmpfs_mb": cfg.tmpfs_mb,
            "tmpfs_inodes": cfg.tmpfs_inodes, "binds": tree.binds, "keyctl": syscall_filter.keyctl_number(),
            "filter": bpf.hex() if bpf else None}
    base = _memory_base(backend)
    try:
        group = cgroup.RunGroup(base, run_memory_mb(cfg) << 20) if base is not None else None
    except OSError as exc:  # this run fails; the others of a batch go on
        return SandboxResult("error", None, "", "", 0.0, False, True,
                             f"could not make the run's memory cgroup in {base.path}: {exc}; not run", backend, ())
    code_fd = os.memfd_create("infertune-program")
    host_dir = None
    try:
        while data:
            data = data[os.write(code_fd, data):]
        os.lseek(code_fd, 0, os.SEEK_SET)
        spec["code_fd"] = code_fd
        if backend == "bwrap":
            argv = bwrap_command(_bwrap_path(), tree, str(LAUNCHER), json.dumps(spec), root)
        elif backend == "unshare":
            spec.update(symlinks=tree.symlinks, parent=os.getpid(), uid=fresh_uid() if root else None)
            argv = [sys.executable, "-I", "-S", str(LAUNCHER), "isolate", json.dumps(spec)]
        else:
            host_dir = tempfile.mkdtemp(prefix="infertune-sbx-")
            spec.update(workdir=host_dir, env=_environment(host_dir))
            argv = [sys.executable, "-I", "-S", str(LAUNCHER), "plain", json.dumps(spec)]
        if group is not None:
            argv = group.enter_argv(argv)
        granted = protections(backend, root, _applied(cfg, backend, group is not None))
        marker = secrets.token_hex(16) if expect_marker else None
        return _supervise(argv, code_fd, cfg, backend, granted, marker, group)
    finally:
        os.close(code_fd)
        if group is not None:
            group.close()
        if host_dir is not None:
            shutil.rmtree(host_dir, ignore_errors=True)


def _supervise(argv: list[str], code_fd: int, cfg: SandboxConfig, backend: str, granted: tuple[str, ...],
               marker: str | None, group: cgroup.RunGroup | None) -> SandboxResult:
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if marker else subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, close_fds=True, pass_fds=(code_fd,),
                            env={}, cwd="/")
    if marker:  # a few bytes into an empty pipe: this never blocks
        try:
            os.write(proc.stdin.fileno(), marker.encode() + b"\n")
        except BrokenPipeError:  # the program is gone already; its status will say why
            pass
        proc.stdin.close()
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
    if not (timed_out or truncated):
        try:  # the program may have closed its output and still be running
            proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            timed_out = True
    if timed_out or truncated:
        _stop(proc, backend)
    try:
        proc.wait(timeout=10.0)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.wait()
    sel.close()
    proc.stdout.close()
    proc.stderr.close()
    stdout = out.decode("utf-8", "replace")
    stderr = err.decode("utf-8", "replace")
    marked = None
    if marker:
        line = f"\n{marker}\n"
        marked = line in "\n" + stdout
        stdout = ("\n" + stdout).replace(line, "\n", 1)[1:] if marked else stdout
    oom_kills = group.oom_kills() if group is not None else 0
    status, detail = _classify(proc.returncode, stderr, timed_out, truncated, cfg, marked, oom_kills)
    return SandboxResult(status, proc.returncode, stdout, stderr, time.monotonic() - start, truncated,
                         backend != "none", detail, backend, granted)


def _classify(returncode: int | None, stderr: str, timed_out: bool, truncated: bool, cfg: SandboxConfig,
              marked: bool | None = None, oom_kills: int = 0) -> tuple[Status, str]:
    """The run's status; ``marked`` is None when no marker was expected, else whether the program printed it."""
    if timed_out:
        return "timeout", f"killed after the {cfg.timeout_s:g} s wall-clock limit"
    if truncated:
        return "error", f"output exceeded {cfg.max_output_bytes} bytes; killed"
    if returncode == LAUNCH_ERROR and "sandbox-launch-error:" in stderr:
        return "error", stderr.strip().splitlines()[-1]
    if returncode == 1 and stderr.startswith("bwrap: "):  # bubblewrap could not build the sandbox
        return "error", stderr.splitlines()[0]
    if oom_kills:
        return "memory", (f"the run's memory cgroup limit of {run_memory_mb(cfg)} MB was reached "
                          f"({oom_kills} process(es) killed)")
    if "MemoryError" in stderr:
        return "memory", f"address-space limit of {cfg.memory_mb} MB exceeded"
    if returncode == 0 and marked is False:
        return "failed", ("exit status 0 before the tests finished (no completion marker): the program stopped "
                          "early, for example with sys.exit or os._exit")
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



def _stop(proc: subprocess.Popen, backend: str) -> None:
    """End a run early. Isolated: kill the run's init (the child of the launcher or of bwrap); the kernel takes the
    whole PID namespace down with it before the launcher can reap it, so once the launcher has exited, nothing of
    the run is left. Unisolated: ask the launcher, which kills the program's process tree."""
    if backend == "none":
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        return
    inits = _children(proc.pid)
    for pid in inits:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if not inits:  # stopped before the init existed: nothing inside can have started yet
        _kill_group(proc)


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:  # a kernel without CONFIG_PROC_CHILDREN
        found = []
        for entry in os.scandir("/proc"):
            try:
                if entry.name.isdigit() and int(Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1]
                                                .split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
        return found


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
