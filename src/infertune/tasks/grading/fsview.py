"""The file system a sandboxed program sees, and the bubblewrap command line that builds it.

Both constructions (bubblewrap, and the launcher's own through ``unshare``) build the same tree from the same
description, so that both give the same guarantees: a new root holding only the system directories and the Python
installation, bound read-only at their own paths, so the interpreter finds its libraries where it was built to. Every
other path of the machine (home directories, the repository, datasets, /run and its sockets, /var, /mnt, /sys) is
absent rather than merely read-only: an ordinary user's own files would otherwise be readable, and a Unix socket the
user owns (a D-Bus session, a Docker socket) could be connected to through a read-only mount.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass

SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/nix", "/gnu")
WORKDIR = "/tmp/work"


@dataclass(frozen=True)
class View:
    """What the new root holds besides /proc, /dev, /tmp and /dev/shm."""

    symlinks: tuple[tuple[str, str], ...]  # (path, target) for system paths that are symlinks (merged /usr)
    binds: tuple[str, ...]  # directories bound read-only at their own path, parents before children


def under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def python_dirs(site_packages: bool) -> list[str]:
    """Directories the interpreter needs: its installation, its virtual environment, and with ``site_packages``
    every other entry of ``sys.path`` except the current directory (editable installs live there)."""
    paths = [sys.base_prefix, sys.prefix, sys.base_exec_prefix, sys.exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable))]
    if site_packages:
        cwd = os.getcwd()
        paths += [p for p in sys.path if p and os.path.realpath(p) != cwd]
    return [os.path.realpath(p) for p in paths if os.path.isdir(p)]


@functools.lru_cache(maxsize=None)
def view(site_packages: bool) -> View:
    symlinks, binds = [], []
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            symlinks.append((path, os.readlink(path)))
        elif os.path.isdir(path):
            binds.append(path)
    for path in sorted(set(python_dirs(site_packages))):
        if path != "/" and not any(under(path, kept) for kept in binds):
            binds.append(path)
    return View(tuple(symlinks), tuple(binds))


def bwrap_command(bwrap: str, tree: View, launcher: str, spec_json: str, code_fd: int, tmpfs_mb: int,
                  python: str) -> list[str]:
    """bwrap's arguments for one run: the tree, a fresh /proc and minimal /dev, the work directory holding the
    program (copied from ``code_fd``), and the launcher in ``exec`` mode to set the limits and start Python.

    The limits are set inside, not inherited: RLIMIT_NPROC set before the user namespace exists would count every
    process the user runs on the machine, while set inside it counts the run's own processes only.
    """
    size = str(tmpfs_mb << 20)
    # /tmp first: a virtual environment living under /tmp is then bound on top of it rather than hidden by it.
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--size", size, "--tmpfs", "/tmp"]
    for path, target in tree.symlinks:
        argv += ["--symlink", target, path]
    for path in tree.binds:
        argv += ["--ro-bind", path, path]
    if not any(under(launcher, kept) for kept in tree.binds):
        argv += ["--ro-bind", launcher, launcher]
    argv += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev",
             "--size", size, "--tmpfs", "/dev/shm",
             "--perms", "0700", "--dir", WORKDIR, "--file", str(code_fd), f"{WORKDIR}/main.py",
             "--remount-ro", "/", "--chdir", WORKDIR,
             "--", python, "-I", "-S", launcher, "exec", spec_json]
    return argv
