"""The file system a sandboxed program sees, and the bubblewrap command line that builds it.

Both constructions (bubblewrap, and the launcher's own through ``unshare``) build the same tree from the same
description, so that both give the same guarantees: a new root holding only the system directories and the Python
installation, bound read-only at their own paths, so the interpreter finds its libraries where it was built to. Every
other path of the machine (home directories, the repository, datasets, /run and /var with their sockets, /mnt, /sys)
is absent rather than merely read-only: an ordinary user's own files would otherwise be readable, and a Unix socket
(a D-Bus session, a Docker or Nix daemon) can be connected to through a read-only mount. That is also why Nix and
Guix contribute only their stores (/nix/store, /gnu/store), not /nix or /var/guix with their daemons' sockets. Any
socket file that does sit inside a visible directory stays connectable.

The Python installation is as small as the run allows. Without ``site_packages`` the program runs the base
interpreter (not a virtual environment's link to it), so a virtual environment, which often lives inside the
repository, is not visible at all. With ``site_packages`` the environment's ``pyvenv.cfg``, its python and the
interpreter's site-packages folders (``site.getsitepackages()``) are added: not the entries of ``sys.path`` that come
from the current folder, ``PYTHONPATH`` or the ``.pth`` files of editable installs, which point into projects and home
folders. Where the interpreter itself lives in a home folder (pyenv, conda in ~), that folder is visible, and
``visible_homes`` says so, so that no run claims ``hidden_home`` there.
"""

from __future__ import annotations

import functools
import os
import pwd
import site
import sys
from dataclasses import dataclass

SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/nix/store", "/gnu/store")
WORKDIR = "/tmp/work"
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
             ("stderr", "/proc/self/fd/2"))
ROOT_INSIDE_ID = 1000  # root through bubblewrap: the user and group id inside, so that the program holds no capability


@dataclass(frozen=True)
class View:
    """What the new root holds besides /proc, /dev, /tmp and /dev/shm."""

    symlinks: tuple[tuple[str, str], ...]  # (path, target) for system paths that are symlinks (merged /usr)
    binds: tuple[str, ...]  # directories and files bound read-only at their own path, parents before children
    python: str  # the interpreter the program is started as, at a path inside ``binds``


def under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def interpreter(site_packages: bool) -> str:
    """The Python the program runs: this one with ``site_packages`` (its virtual environment decides which packages
    are importable), else the base interpreter behind any virtual environment, which needs only its installation."""
    if site_packages:
        return sys.executable
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def python_paths(site_packages: bool) -> list[str]:
    """Folders (and, for a virtual environment, files) the interpreter needs, real paths first then as started."""
    paths = [sys.base_prefix, sys.base_exec_prefix, os.path.dirname(interpreter(False))]
    if site_packages:
        paths += [p for p in site.getsitepackages() if os.path.isdir(p)]
        if sys.prefix != sys.base_prefix:  # a virtual environment: its python and pyvenv.cfg, not the whole folder
            paths += [sys.executable, os.path.join(sys.prefix, "pyvenv.cfg")]
    found = []
    for path in paths:
        if os.path.isdir(path):
            found.append(os.path.realpath(path))
        elif os.path.exists(path):
            found.append(os.path.abspath(path))  # a file keeps the path it is started as (a venv's python link)
    return found


@functools.lru_cache(maxsize=None)
def view(site_packages: bool) -> View:
    symlinks, binds = [], []
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            symlinks.append((path, os.readlink(path)))
        elif os.path.isdir(path):
            binds.append(path)
    for path in sorted(set(python_paths(site_packages))):
        if path != "/" and not any(under(path, kept) for kept in binds):
            binds.append(path)
    return View(tuple(symlinks), tuple(binds), interpreter(site_packages))


def home_folders() -> set[str]:
    """/home, /root, $HOME and this user's home from the password database, as real paths (never /)."""
    found = {"/home", "/root", os.path.expanduser("~")}
    try:
        found.add(pwd.getpwuid(os.geteuid()).pw_dir)
    except KeyError:
        pass
    return {os.path.realpath(p) for p in found if p} - {"/"}


def visible_homes(tree: View) -> list[str]:
    """The bound paths (as the program sees them) that lie in a home folder: empty when home folders are hidden."""
    homes = home_folders()
    return [path for path in tree.binds if any(under(path, home) for home in homes)]


def bwrap_command(bwrap: str, tree: View, launcher: str, spec_json: str, root: bool) -> list[str]:
    """bwrap's arguments for one run: the tree, a fresh /proc and the same minimal /dev as the launcher's, then the
    launcher in ``exec`` mode, which mounts the capped /tmp and /dev/shm (bubblewrap cannot cap a tmpfs's number of
    files), writes the program, sets the limits and the filter and starts Python.

    The limits are set inside, not inherited: RLIMIT_NPROC set before the user namespace exists would count every
    process the user runs on the machine, while set inside it counts the run's own processes only. Root goes through
    bubblewrap only where it lacks CAP_SYS_ADMIN (a container), in a user namespace, as ROOT_INSIDE_ID.
    """
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--new-session"]
    if root:
        argv += ["--unshare-user", "--uid", str(ROOT_INSIDE_ID), "--gid", str(ROOT_INSIDE_ID)]
    # /tmp first, small: it only holds mount points; a Python under /tmp is bound on top of it, and the launcher
    # binds it again on top of the capped /tmp it mounts.
    argv += ["--size", str(1 << 20), "--tmpfs", "/tmp"]
    for path, target in tree.symlinks:
        argv += ["--symlink", target, path]
    for path in tree.binds:
        argv += ["--ro-bind", path, path]
    if not any(under(launcher, kept) for kept in tree.binds):
        argv += ["--ro-bind", launcher, launcher]
    argv += ["--proc", "/proc", "--size", str(64 << 10), "--tmpfs", "/dev"]
    for name in DEV_NODES:
        if os.path.exists(f"/dev/{name}"):
            argv += ["--dev-bind", f"/dev/{name}", f"/dev/{name}"]
    for name, target in DEV_LINKS:
        argv += ["--symlink", target, f"/dev/{name}"]
    argv += ["--dir", "/dev/shm", "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/",
             "--", tree.python, "-I", "-S", launcher, "exec", spec_json]
    return argv
