"""Run a command as an ordinary user from a root test process, with this interpreter and package reachable.

CI runs as root, but the sandbox must hold for the ordinary users most people are. ``run_as_user`` starts this file
as a helper that enters a private mount namespace (nothing changes for the machine), covers each directory the user
may not enter on the way to the interpreter, the package and the given paths (for example /root, when Python lives
under /root/.pyenv) with a tmpfs, binds those paths back, then drops to the user with util-linux's setpriv and execs
the command. With ``no_userns`` it first enters an identity-mapped user namespace whose user.max_user_namespaces is 0:
a machine whose kernel forbids user namespaces, on which no isolation is possible for the user. With ``id_map`` and
no ``user``, it runs the command as root inside a user namespace with that map: root in a rootless container.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

USER = 65534  # nobody
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
FULL_MAP = "0 0 4294967295"


def run_as_user(argv: list[str], *, env: dict[str, str], cwd: str, keep: tuple[str, ...] = (),
                no_userns: bool = False, user: int | None = USER, id_map: str | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``argv`` as ``user`` (root when None) in ``cwd`` with exactly ``env``, this package's source first on
    PYTHONPATH."""
    import infertune

    package_src = str(Path(infertune.__file__).resolve().parents[1])
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [package_src, env.get("PYTHONPATH")]))}
    spec = {"argv": argv, "env": env, "cwd": cwd, "deny_userns": no_userns, "user": user,
            "id_map": FULL_MAP if no_userns and id_map is None else id_map,
            "keep": sorted({sys.base_prefix, sys.prefix, package_src, cwd, *keep})}
    return subprocess.run([sys.executable, "-I", __file__, json.dumps(spec)], capture_output=True, text=True,
                          timeout=timeout)


def _check(result: int, what: str) -> None:
    if result != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


def _closed_ancestors(path: str) -> list[str]:
    """Directories on the way to ``path`` that others cannot pass through."""
    parts = path.strip("/").split("/")
    found = []
    for i in range(1, len(parts) + 1):
        ancestor = "/" + "/".join(parts[:i])
        if not os.stat(ancestor).st_mode & 0o001:
            found.append(ancestor)
    return found


def _enter_userns(id_map: str, deny_nesting: bool) -> None:
    """Enter a user namespace with ``id_map`` for user and group ids; with ``deny_nesting`` no further user
    namespace may be created in it. Only a process outside may write a map of more than one id, so a forked parent
    writes it, then waits and passes on the status."""
    libc = ctypes.CDLL(None, use_errno=True)
    ready_r, ready_w = os.pipe()
    mapped_r, mapped_w = os.pipe()
    parent = os.fork()
    if parent:  # the process that goes on is the child below; this one maps its ids and passes on its status
        os.read(ready_r, 1)
        for name in ("uid_map", "gid_map"):
            Path(f"/proc/{parent}/{name}").write_text(id_map)
        os.write(mapped_w, b"x")
        _, status = os.waitpid(parent, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    _check(libc.unshare(CLONE_NEWUSER), "unshare user namespace")
    os.write(ready_w, b"x")
    os.read(mapped_r, 1)
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    if deny_nesting:
        Path("/proc/sys/user/max_user_namespaces").write_text("0")


def main() -> None:
    spec = json.loads(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    if spec["id_map"]:
        _enter_userns(spec["id_map"], spec["deny_userns"])
    _check(libc.unshare(CLONE_NEWNS), "unshare mount namespace")
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    keep = sorted({os.path.realpath(p) for p in spec["keep"] if os.path.isdir(p)})
    handles = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in keep}
    covered = []
    for folder in sorted({a for p in keep for a in _closed_ancestors(p)}):
        if not any(folder.startswith(c + "/") for c in covered):
            _check(libc.mount(b"tmpfs", folder.encode(), b"tmpfs", 0, b"mode=0755"), f"cover {folder}")
            covered.append(folder)
    for path, fd in handles.items():
        if any(path.startswith(c + "/") for c in covered):
            os.makedirs(path, exist_ok=True)
            _check(libc.mount(f"/proc/self/fd/{fd}".encode(), path.encode(), None, MS_BIND | MS_REC, None),
                   f"bind {path}")
        os.close(fd)
    os.chdir(spec["cwd"])
    if spec["user"] is None:
        os.execve(spec["argv"][0], spec["argv"], spec["env"])
    user = spec["user"]
    setpriv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--"]
    os.execve(shutil.which("setpriv") or "/usr/bin/setpriv", setpriv + spec["argv"], spec["env"])


if __name__ == "__main__":
    main()
