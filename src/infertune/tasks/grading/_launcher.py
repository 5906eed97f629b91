"""The sandbox's init: isolate, start the untrusted program, and clean up after it.

Invoked as ``python -I -S _launcher.py SPEC_JSON`` by ``sandbox.py``, so that sandboxes can be started from many
threads at once (no preexec hook). Standard library only. As root it enters new network and mount namespaces, puts
fresh tmpfs mounts on every world-writable directory, and becomes the child subreaper; it forks the program, which
drops to the run's own user id with no way back (no_new_privs) and execs Python. When the program ends, the launcher
kills and reaps every process left behind, then exits with the program's status (128 + signal if it was killed).
A launch failure prints "sandbox-launch-error: ..." and exits 121.
"""

import ctypes
import json
import os
import resource
import signal
import sys
import time

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 36, 38
LAUNCH_ERROR = 121


def fail(message):
    os.write(2, f"sandbox-launch-error: {message}\n".encode())
    os._exit(LAUNCH_ERROR)


def leftovers(uid, pgid, me):
    """Live processes of this run: its user id (root mode) or its process group (otherwise)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
            state, _ppid, group = stat.rsplit(")", 1)[1].split()[:3]
            if state == "Z":
                continue
            if uid is not None:
                with open(f"/proc/{name}/status") as fh:
                    real_uid = next(int(line.split()[1]) for line in fh if line.startswith("Uid:"))
                if real_uid == uid:
                    found.append(int(name))
            elif int(group) == pgid:
                found.append(int(name))
        except (OSError, StopIteration, ValueError):
            continue
    return found


def mount(libc, source, target, fstype, flags, options=None):
    enc = lambda x: None if x is None else x.encode()  # noqa: E731
    if libc.mount(enc(source), enc(target), enc(fstype), flags, enc(options)) != 0:
        fail(f"mount {source} on {target}: {os.strerror(ctypes.get_errno())}")


def first_closed_ancestor(path):
    """The highest directory on the way to ``path`` that other users cannot pass through, or None."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        ancestor = "/" + "/".join(parts[:i])
        if not os.stat(ancestor).st_mode & 0o001:
            return ancestor
    return None


def under(path, folder):
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def hide_and_keep_reachable(libc, spec):
    """Cover world-writable and closed directories with fresh tmpfs mounts, then put the Python installation back.

    The interpreter may live under a directory the program's user cannot enter (a pyenv under /root) or under one
    that gets covered (a virtual environment in /tmp). Handles to it are opened before anything is covered and bound
    back, read-only, at the same paths, so the interpreter and its libraries are found where they were built to be.
    """
    keep = [p for p in spec["reachable"] if os.path.isdir(p)]
    handles = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in keep}
    closed = sorted({a for a in (first_closed_ancestor(p) for p in keep) if a})
    covered = [t for t in spec["tmpfs"] if os.path.isdir(t)]
    for target in covered:
        mount(libc, "tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={spec['tmpfs_mb']}m,mode=1777")
    for folder in closed:
        if not any(under(folder, t) for t in covered):
            mount(libc, "tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, f"size={spec['tmpfs_mb']}m,mode=0755")
    for path, fd in handles.items():
        if any(under(path, f) for f in covered + closed):
            os.makedirs(path, mode=0o755, exist_ok=True)
            mount(libc, f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
            mount(libc, None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)
        os.close(fd)


def reap_all():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return False


def main():
    spec = json.loads(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    root = os.geteuid() == 0
    uid = spec["uid"] if root else None
    workdir = spec["fallback_dir"]
    if spec["isolate"] and root:
        with open(spec["code_path"], "rb") as fh:
            code = fh.read()
        if libc.unshare(CLONE_NEWNS | CLONE_NEWNET) != 0:
            fail(f"unshare: {os.strerror(ctypes.get_errno())}")
        mount(libc, "none", "/", None, MS_REC | MS_PRIVATE)
        hide_and_keep_reachable(libc, spec)
        workdir = os.path.join(spec["tmpfs"][0], "work")
        os.mkdir(workdir, 0o700)
        with open(os.path.join(workdir, "main.py"), "wb") as fh:
            fh.write(code)
        for path in (workdir, os.path.join(workdir, "main.py")):
            os.chown(path, uid, uid)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    child = os.fork()
    if child == 0:
        try:
            os.chdir(workdir)
            for name, value in spec["limits"].items():
                resource.setrlimit(getattr(resource, name), (value, value))
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            argv = [spec["python"], "-I", "-B"] + ([] if spec["site_packages"] else ["-S"]) + ["main.py"]
            os.execve(spec["python"], argv, spec["env"])
        except BaseException as exc:  # noqa: BLE001 - anything here is a launch failure
            fail(f"start program: {exc!r}")

    # The supervisor may ask for an early end (timeout, output cap) with SIGTERM: end the program and clean up.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGKILL))
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    pgid = os.getpgid(0)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        pids = leftovers(uid, pgid, os.getpid())
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        done = reap_all()
        if not pids and done:
            break
        time.sleep(0.005)
    if os.WIFSIGNALED(status):
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status))


if __name__ == "__main__":
    main()
