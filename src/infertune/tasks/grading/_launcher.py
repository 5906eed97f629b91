"""The sandbox's process side: isolate, start the untrusted program, and make sure nothing outlives it.

Invoked by ``sandbox.py`` as ``python -I -S _launcher.py MODE SPEC_JSON`` (no preexec hook, so sandboxes can start
from many threads at once). Standard library only; ``ctypes`` is imported only where system calls need it, because
it costs a noticeable share of a short run's start-up. Modes:

- ``isolate``: the direct construction, used as root and, for an ordinary user, when bubblewrap is absent. The
  launcher unshares mount, network, PID, IPC and UTS namespaces (and a user namespace when not root), then forks the
  run's init, PID 1 of the new PID namespace. The init builds a new root file system (read-only binds of the system
  directories and the Python installation, a fresh /proc, a minimal /dev, tmpfs mounts on /tmp and /dev/shm capped
  in bytes and in files), pivots into it and detaches the machine's file system, forks the program and exits with
  its status. When PID 1 exits the kernel kills every process left in the namespace, so nothing outlives the run,
  whatever it did (setsid, double fork). As root the program also runs as a fresh user id, and the run's IPC
  namespace allows no System V shared memory, message queue or semaphore set.
- ``exec``: inside bubblewrap, which has built the same view: enter a user and mount namespace of the launcher's
  own to mount the capped /tmp and /dev/shm (bubblewrap cannot cap a tmpfs's number of files), write the program,
  then start it as below.
- ``plain``: no isolation (explicit opt-in only): the program under the limits, with its process tree killed at the
  end, as far as it can be found.

Every program starts the same way (``start_program``): resource limits, its own user id (root only), a fresh
session keyring of its own, no_new_privs and the seccomp filter that ``syscall_filter.py`` built, then exec.

A launch failure prints "sandbox-launch-error: ..." and exits 121.
"""

import json
import os
import resource
import signal
import sys
import time

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE = 1024, 2048, 4096, 16384, 1 << 18
MS_RELATIME, MS_STRICTATIME = 1 << 21, 1 << 24
ST_NOATIME, ST_NODIRATIME, ST_RELATIME = 1024, 2048, 4096
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 22, 36, 38
SECCOMP_MODE_FILTER, KEYCTL_JOIN_SESSION_KEYRING = 2, 1
# The run's own IPC namespace (root only: the files belong to its owner) allows no System V object at all.
IPC_LIMITS = (("kernel/shmmni", "0"), ("kernel/shmall", "0"), ("kernel/shmmax", "0"), ("kernel/msgmni", "0"),
              ("kernel/sem", "0 0 0 0"))
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
STAGE = "/tmp"  # where the new root is assembled before the pivot; any directory that exists would do
LAUNCH_ERROR = 121


def fail(message):
    os.write(2, f"sandbox-launch-error: {message}\n".encode())
    os._exit(LAUNCH_ERROR)


def exit_like(status):
    """Exit the way the waited-for process did: its exit code, or 128 + the signal that killed it."""
    os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))


def read_code(fd):
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def start_program(spec, sys_, uid=None):
    """In the forked child (or inside bwrap): limits, the run's own user id (root only), a fresh session keyring,
    no_new_privs, the seccomp filter, then exec Python. Nothing of the program has run before the exec."""
    try:
        os.chdir(spec["workdir"])
        for name, value in spec["limits"].items():
            resource.setrlimit(getattr(resource, name), (value, value))
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        if spec["keyctl"] is not None:  # after the uid change: the keyring belongs to the program's user
            sys_.join_fresh_session_keyring(spec["keyctl"])
        sys_.prctl(PR_SET_NO_NEW_PRIVS, 1)
        if spec["filter"]:
            sys_.install_filter(bytes.fromhex(spec["filter"]))
        argv = [spec["python"], "-I", "-B"] + ([] if spec["site_packages"] else ["-S"]) + ["main.py"]
        os.execve(spec["python"], argv, spec["env"])
    except BaseException as exc:  # noqa: BLE001 - anything here is a launch failure
        fail(f"start program: {exc!r}")


# --- the direct construction ---------------------------------------------------------------------------------------


class Syscalls:
    """The few system calls Python 3.11 has no wrapper for."""

    def __init__(self):
        import ctypes

        self.ctypes = ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)

    def check(self, result, what):
        if result != 0:
            fail(f"{what}: {os.strerror(self.ctypes.get_errno())}")

    def mount(self, source, target, fstype, flags, options=None):
        enc = lambda x: None if x is None else x.encode()  # noqa: E731
        self.check(self.libc.mount(enc(source), enc(target), enc(fstype), flags, enc(options)),
                   f"mount {source} on {target}")

    def unshare(self, flags):
        self.check(self.libc.unshare(flags), "unshare (are namespaces allowed here?)")

    def prctl(self, option, value):
        self.check(self.libc.prctl(option, value, 0, 0, 0), f"prctl {option}")

    def pivot_root(self, new_root, put_old):
        number = SYS_PIVOT_ROOT.get(os.uname().machine)
        if number is None:
            fail(f"pivot_root: unknown system call number on {os.uname().machine}")
        self.check(self.libc.syscall(number, new_root.encode(), put_old.encode()), "pivot_root")

    def umount(self, target, flags):
        self.check(self.libc.umount2(target.encode(), flags), f"umount {target}")

    def drop_capabilities(self):
        """Empty every capability set: a program that attached to this process would find nothing to use."""
        c = self.ctypes

        class Header(c.Structure):
            _fields_ = [("version", c.c_uint32), ("pid", c.c_int)]

        class Data(c.Structure):
            _fields_ = [("effective", c.c_uint32), ("permitted", c.c_uint32), ("inheritable", c.c_uint32)]

        self.check(self.libc.capset(c.byref(Header(0x20080522, 0)), (Data * 2)()), "capset")

    def join_fresh_session_keyring(self, keyctl):
        """keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL): a new, empty session keyring instead of the caller's."""
        self.libc.syscall.restype = self.ctypes.c_long
        if self.libc.syscall(keyctl, self.ctypes.c_long(KEYCTL_JOIN_SESSION_KEYRING), None) < 0:
            fail(f"join a fresh session keyring: {os.strerror(self.ctypes.get_errno())}")

    def install_filter(self, program):
        """prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &sock_fprog) with ``program``, struct sock_filter bytes."""
        c = self.ctypes

        class Fprog(c.Structure):
            _fields_ = [("len", c.c_ushort), ("filter", c.c_void_p)]

        buffer = c.create_string_buffer(program, len(program))
        fprog = Fprog(len(program) // 8, c.cast(buffer, c.c_void_p))
        self.check(self.libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, c.byref(fprog), 0, 0), "seccomp filter")


def write_file(path, text):
    with open(path, "w") as fh:
        fh.write(text)


def mounts_below(mount_id):
    """Mount points of the mount ``mount_id`` and of every mount stacked inside it, from /proc/self/mountinfo.

    Following parent ids (rather than path prefixes) skips mounts the stage tmpfs hides from view.
    """
    children, points = {}, {}
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            point = fields[4]
            for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
                point = point.replace(code, char)
            points[fields[0]] = point
            children.setdefault(fields[1], []).append(fields[0])
    found, frontier = [], [mount_id]
    while frontier:
        found.extend(points[m] for m in frontier)
        frontier = [c for m in frontier for c in children.get(m, ())]
    return found


def stage_mount_id(path):
    """The id of the topmost mount on ``path`` (the last one listed)."""
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[0] for line in fh if line.split()[4] == path][-1]


def make_read_only(sys_, point, allow_devices=False):
    """Remount one mount read-only and nosuid (nodev too unless ``allow_devices``), keeping the flags a user
    namespace may not clear."""
    f = os.statvfs(point).f_flag
    flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | (f & (MS_NODEV | MS_NOEXEC))
    flags |= 0 if allow_devices else MS_NODEV
    flags |= MS_NOATIME if f & ST_NOATIME else (MS_RELATIME if f & ST_RELATIME else MS_STRICTATIME)
    flags |= MS_NODIRATIME if f & ST_NODIRATIME else 0
    sys_.mount(None, point, None, flags)


def remount_read_only(sys_, mount_id, devices, writable):
    """Make a mount and every mount inside it read-only (``make_read_only``), the device nodes under ``devices``
    still usable; the mount on ``writable`` stays as it is."""
    for point in mounts_below(mount_id):
        if point != writable:
            make_read_only(sys_, point, allow_devices=point.startswith(devices + "/"))


def bind(sys_, fd, target, is_dir=True):
    if is_dir:
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
    sys_.mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)


def open_paths(paths):
    """(path, O_PATH fd, is a directory) for each path, opened while the machine's file system is still in view."""
    return [(path, os.open(path, os.O_PATH), os.path.isdir(path)) for path in paths]


def capped_tmpfs(sys_, target, spec):
    """A private tmpfs capped in bytes and in files: empty files and folders cost no bytes but kernel memory."""
    sys_.mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV,
               f"size={spec['tmpfs_mb']}m,nr_inodes={spec['tmpfs_inodes']},mode=1777")


def write_program(work, code, uid=None):
    os.mkdir(work, 0o700)
    with open(work + "/main.py", "wb") as fh:
        fh.write(code)
    if uid is not None:
        for path in (work, work + "/main.py"):
            os.chown(path, uid, uid)


def build_root(sys_, spec, code, uid):
    """Assemble the program's file system under STAGE, then pivot into it and detach the machine's.

    Everything is opened before STAGE is covered (the Python installation may live under /tmp). The view: system
    directories and the Python installation bound read-only at their own paths, every other directory absent;
    a fresh /proc of the new PID namespace; a /dev with only harmless devices; private tmpfs mounts capped in bytes
    and files on /tmp (holding the work directory) and /dev/shm. Everything but those two is read-only.
    """
    sys_.mount(None, "/", None, MS_REC | MS_PRIVATE)
    paths = open_paths(spec["binds"])
    devs = [(name, os.open(f"/dev/{name}", os.O_PATH)) for name in DEV_NODES if os.path.exists(f"/dev/{name}")]
    r = STAGE
    sys_.mount("tmpfs", r, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    stage = stage_mount_id(r)
    os.mkdir(r + "/tmp")  # first: a virtual environment under /tmp is then bound on top of it, not hidden by it
    capped_tmpfs(sys_, r + "/tmp", spec)
    for path, target in spec["symlinks"]:
        os.makedirs(os.path.dirname(r + path), exist_ok=True)
        os.symlink(target, r + path)
    for path, fd, is_dir in paths:
        bind(sys_, fd, r + path, is_dir)
    os.mkdir(r + "/dev")
    sys_.mount("tmpfs", r + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
    os.mkdir(r + "/dev/shm")
    for name, fd in devs:
        bind(sys_, fd, f"{r}/dev/{name}", is_dir=False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{r}/dev/{name}")
    for fd in [fd for _, fd, _ in paths] + [fd for _, fd in devs]:
        os.close(fd)
    os.mkdir(r + "/proc")
    remount_read_only(sys_, stage, devices=r + "/dev", writable=r + "/tmp")
    capped_tmpfs(sys_, r + "/dev/shm", spec)
    sys_.mount("proc", r + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if uid is not None:  # root: the run's IPC namespace is its own, and its owner may forbid System V IPC in it
        for name, value in IPC_LIMITS:
            write_file(f"{r}/proc/sys/{name}", value)
    write_program(r + spec["workdir"], code, uid)
    os.chdir(r)
    sys_.pivot_root(".", ".")  # the old root ends up stacked on the new one, and is detached right away
    sys_.umount(".", MNT_DETACH)
    os.chdir("/")


def run_init(sys_, spec, code, uid):
    """PID 1 of the run: build the view, start the program, reap, and exit with the program's status."""
    sys_.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the launcher (and so the supervisor) gone: the whole run goes
    sys_.prctl(PR_SET_DUMPABLE, 0)  # the program cannot attach to the init, which holds capabilities here
    build_root(sys_, spec, code, uid)
    program = os.fork()
    if program == 0:
        start_program(spec, sys_, uid)
    sys_.drop_capabilities()
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        if pid == program:
            exit_like(status)  # PID 1 exits: the kernel kills whatever else is left in the namespace


def isolate(spec):
    sys_ = Syscalls()
    sys_.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the supervisor gone: this launcher goes, and so its init
    if os.getppid() != spec["parent"]:
        fail("the supervisor ended before the sandbox started")
    code = read_code(spec["code_fd"])
    root = os.geteuid() == 0
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    uid, gid = os.getuid(), os.getgid()
    sys_.unshare(flags if root else flags | CLONE_NEWUSER)
    if not root:
        # Inside, the user keeps its own ids; the capabilities the new namespace grants serve only to build the view.
        write_file("/proc/self/setgroups", "deny")
        write_file("/proc/self/uid_map", f"{uid} {uid} 1")
        write_file("/proc/self/gid_map", f"{gid} {gid} 1")
    init = os.fork()
    if init == 0:
        try:
            run_init(sys_, spec, code, spec["uid"] if root else None)
        except BaseException as exc:  # noqa: BLE001 - anything here is a launch failure
            fail(f"build the sandbox: {exc!r}")
    while True:
        try:
            _, status = os.waitpid(init, 0)
            exit_like(status)
        except InterruptedError:
            continue


# --- inside bubblewrap ------------------------------------------------------------------------------------------------


def inside_bwrap(spec):
    """bubblewrap built the view; mount the capped /tmp and /dev/shm in a user and mount namespace of our own (the
    same user id inside), bind back what /tmp covers (a Python installed under /tmp), write the program, start it.

    The new user namespace grants capabilities for these mounts only: the program, exec'd under a non-zero user id
    with no_new_privs, has none, and the seccomp filter keeps it from making a user namespace of its own."""
    sys_ = Syscalls()
    code = read_code(spec["code_fd"])
    covered = open_paths([p for p in spec["binds"] if p.startswith("/tmp/")])
    uid, gid = os.getuid(), os.getgid()
    sys_.unshare(CLONE_NEWUSER | CLONE_NEWNS)
    write_file("/proc/self/setgroups", "deny")
    write_file("/proc/self/uid_map", f"{uid} {uid} 1")
    write_file("/proc/self/gid_map", f"{gid} {gid} 1")
    capped_tmpfs(sys_, "/tmp", spec)
    for path, fd, is_dir in covered:
        bind(sys_, fd, path, is_dir)
        make_read_only(sys_, path)
        os.close(fd)
    capped_tmpfs(sys_, "/dev/shm", spec)
    write_program(spec["workdir"], code)
    start_program(spec, sys_)


# --- without isolation ---------------------------------------------------------------------------------------------


def descendants(me):
    """Live processes below ``me`` (orphans come back to ``me``, the subreaper, so the tree holds them all)."""
    parent = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                state, ppid = fh.read().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if state != "Z":
            parent[int(name)] = int(ppid)
    found, frontier = [], {me}
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier}
        found.extend(frontier)
    return found


def reap_all():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return False


def plain(spec):
    sys_ = Syscalls()
    code = read_code(spec["code_fd"])
    with open(os.path.join(spec["workdir"], "main.py"), "wb") as fh:
        fh.write(code)
    sys_.prctl(PR_SET_CHILD_SUBREAPER, 1)
    child = os.fork()
    if child == 0:
        start_program(spec, sys_)
    # The supervisor may ask for an early end (timeout, output cap) with SIGTERM: end the program and clean up.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGKILL))
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        pids = descendants(os.getpid())
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if reap_all() and not pids:
            break
        time.sleep(0.005)
    exit_like(status)


def main():
    mode, spec = sys.argv[1], json.loads(sys.argv[2])
    if mode == "exec":
        inside_bwrap(spec)
    elif mode == "isolate":
        isolate(spec)
    elif mode == "plain":
        plain(spec)
    else:
        fail(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
