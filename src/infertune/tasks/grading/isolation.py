"""Which isolation the sandbox can give on this machine, what each kind protects, and what to do when none works.

Three ways to run a program, tried in this order:

- ``bwrap``: bubblewrap (what Flatpak uses) builds the sandbox from unprivileged user namespaces; for ordinary users
  when it is installed, and for root where the launcher's own construction fails (no CAP_SYS_ADMIN, in a container).
- ``unshare``: the launcher builds the same sandbox itself with ``unshare(2)``, ``mount(2)`` and ``pivot_root(2)``:
  as root (adding a fresh user id), or as an ordinary user through a user namespace when bwrap is absent.
- ``none``: resource limits and a clean environment only. Model-written code runs this way only after an explicit
  opt-in (``SandboxConfig.allow_unisolated``, ``infertune --allow-unisolated`` or ``INFERTUNE_ALLOW_UNISOLATED=1``).

Nothing here starts a process: ``sandbox.py`` probes the backends, and this module turns the findings into words
and picks the user id a root run gets.
"""

from __future__ import annotations

import functools
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

BACKENDS = ("bwrap", "unshare", "none")
ENV_BACKEND = "INFERTUNE_SANDBOX_BACKEND"
ENV_ALLOW_UNISOLATED = "INFERTUNE_ALLOW_UNISOLATED"
UID_BASE = 1_000_000  # root runs programs as user ids far above any real account

# What each protection means, in the words the doctor and the README use. Each run's result lists those it got.
PROTECTIONS: dict[str, str] = {
    "resource_limits": "limits on each process: address space (memory_mb), CPU seconds, processes, 64 open files, "
                       "file size, no POSIX message queues (setrlimit)",
    "memory_cgroup": "a memory cgroup caps all of the run's memory together (every process, shared memory, tmpfs "
                     "files, kernel memory) at memory_mb + 2 x tmpfs_mb; without it memory is capped per process only",
    "clean_environment": "an empty environment: no token or key of the caller's environment is inherited",
    "private_keyring": "a fresh, empty session keyring: the caller's session keyring and its keys are out of reach",
    "syscall_filter": "a seccomp filter refuses the kernel keyring (add_key, keyctl, request_key), System V IPC, "
                      "memfd_create/memfd_secret and new user namespaces",
    "process_tree_kill": "every process the program started is killed when it ends, even after setsid or a double "
                         "fork (the PID namespace's init exits)",
    "pid_namespace": "its own PID namespace: it cannot see or signal other processes",
    "network_isolation": "its own network namespace: no network at all, not even the machine's loopback",
    "read_only_filesystem": "only the system directories (/usr, /etc, /lib..., /nix/store, /gnu/store) and the Python "
                            "installation (with site_packages, also its site-packages folders) are visible, "
                            "read-only; the repository, /run, /var and every other path are absent (a socket file "
                            "inside a visible folder stays connectable)",
    "hidden_home": "no visible path lies in a home folder (/home, /root, $HOME): not the case when the Python "
                   "installation lives in one",
    "private_tmp": "/tmp (holding the work directory) and /dev/shm are private tmpfs mounts capped at tmpfs_mb and "
                   "tmpfs_inodes files each",
    "minimal_dev": "/dev holds only null, zero, full, random, urandom and tty, the fd, stdin, stdout and stderr "
                   "links and shm: no GPU, camera, sound, disk or pseudo-terminal",
    "dies_with_parent": "the run is killed when the process that started it dies",
    "separate_user": "a fresh, otherwise unused user id (root only), so file permissions protect the machine too",
}
_NAMESPACED = ("process_tree_kill", "pid_namespace", "network_isolation", "read_only_filesystem", "private_tmp",
               "minimal_dev", "dies_with_parent")


@dataclass(frozen=True)
class Applied:
    """Protections that depend on the machine and the run, not on the backend alone."""

    memory_cgroup: bool = False  # a group could be made (isolated runs only)
    syscall_filter: bool = False  # the architecture is one the filter knows
    private_keyring: bool = False  # keyctl's system call number is known
    hidden_home: bool = False  # no path of the view lies in a home folder


def protections(backend: str, root: bool, applied: Applied = Applied()) -> tuple[str, ...]:
    """The protections a run through ``backend`` gets, in PROTECTIONS order. An unisolated run (backend none) gets
    the limits, the environment, the keyring and the filter, and no process_tree_kill: a double-forked, setsid
    child whose parent killed the launcher outlives it."""
    names = {"resource_limits", "clean_environment"}
    names.update(name for name in ("syscall_filter", "private_keyring") if getattr(applied, name))
    if backend in ("bwrap", "unshare"):
        names.update(_NAMESPACED)
        names.update(name for name in ("memory_cgroup", "hidden_home") if getattr(applied, name))
    if backend == "unshare" and root:
        names.add("separate_user")
    return tuple(name for name in PROTECTIONS if name in names)


def requested_backend(configured: str) -> str:
    """The backend asked for: the configuration's, or when that is "auto", ``$INFERTUNE_SANDBOX_BACKEND``."""
    wanted = configured if configured != "auto" else os.environ.get(ENV_BACKEND, "auto").strip() or "auto"
    if wanted not in BACKENDS + ("auto",):
        raise ValueError(f"sandbox backend {wanted!r} is not one of auto, {', '.join(BACKENDS)} "
                         f"(set by SandboxConfig.backend or ${ENV_BACKEND})")
    return wanted


def unisolated_allowed(configured: bool) -> bool:
    """The explicit opt-in: the configuration's flag, or ``$INFERTUNE_ALLOW_UNISOLATED`` set to 1, true or yes."""
    return configured or os.environ.get(ENV_ALLOW_UNISOLATED, "").strip().lower() in ("1", "true", "yes")


def allow_unisolated_runs() -> None:
    """Opt in for this process and the processes it starts (the CLI's ``--allow-unisolated``)."""
    os.environ[ENV_ALLOW_UNISOLATED] = "1"


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def kernel_obstacles() -> list[str]:
    """Kernel settings that forbid ordinary users to create user namespaces, each with the setting to change."""
    found = []
    if _read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        found.append("kernel.unprivileged_userns_clone is 0 (Debian's switch for unprivileged user namespaces); "
                     "allow them with: sudo sysctl -w kernel.unprivileged_userns_clone=1")
    if _read("/proc/sys/user/max_user_namespaces") == "0":
        found.append("user.max_user_namespaces is 0; allow them with: sudo sysctl -w user.max_user_namespaces=15000")
    if _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        found.append("AppArmor restricts unprivileged user namespaces (Ubuntu 23.10+); install bubblewrap, whose "
                     "AppArmor profile allows them, or: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0")
    return found


DOCTOR_CHECKS = "`infertune doctor` checks the result."
HOW_TO_ISOLATE = (
    "To isolate model-written code, do one of: install bubblewrap (Debian/Ubuntu: sudo apt-get install bubblewrap; "
    "Fedora: sudo dnf install bubblewrap; Arch: sudo pacman -S bubblewrap); allow unprivileged user namespaces "
    "(sudo sysctl -w kernel.unprivileged_userns_clone=1 on Debian, user.max_user_namespaces > 0 elsewhere, "
    "kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu); or run as root in a container that allows "
    "namespaces."
)


def how_to_isolate(root: bool, bwrap_installed: bool) -> str:
    """What to change on this machine: installing bubblewrap is no advice where it is installed (and failed)."""
    if not bwrap_installed:
        advice = HOW_TO_ISOLATE
    else:
        advice = ("To isolate model-written code: bubblewrap is installed but could not build its sandbox (its "
                  "reason is above); it needs user namespaces: allow them (sudo sysctl -w "
                  "kernel.unprivileged_userns_clone=1 on Debian, user.max_user_namespaces > 0 elsewhere, "
                  "kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu, or an AppArmor profile for bwrap).")
    if root:
        advice += (" As root in a container: give it CAP_SYS_ADMIN (docker run --cap-add SYS_ADMIN; where its "
                   "seccomp or AppArmor profile still refuses unshare or mount, relax that too), or let it create "
                   "user namespaces for bubblewrap.")
    return f"{advice} {DOCTOR_CHECKS}"


HOW_TO_OPT_IN = (
    "To run it anyway with only resource limits and a clean environment (it could then delete your files, reach "
    f"the network and leave processes behind), pass --allow-unisolated or set {ENV_ALLOW_UNISOLATED}=1 "
    "(SandboxConfig(allow_unisolated=True) in Python)."
)


class SandboxUnavailable(ValueError):
    """Model-written code would run without isolation and nobody opted in.

    A ValueError, so that the command line reports it as a problem of set-up (exit status 2), not as a crash.
    """


def unavailable_message(failures: dict[str, str], requested: str | None = None, *, root: bool = False,
                        bwrap_installed: bool = False) -> str:
    """Why no backend works (each one's reason), then how to enable isolation here and how to opt out of it."""
    reasons = "; ".join(f"{name}: {why}" for name, why in failures.items())
    how = how_to_isolate(root, bwrap_installed)
    if requested is not None:
        return (f"the sandbox backend {requested!r} was asked for (SandboxConfig.backend or ${ENV_BACKEND}) but "
                f"does not work here ({reasons}). Ask for 'auto' to use whichever works. {how}")
    return (f"refusing to run model-written code without isolation: no sandbox backend works here ({reasons}). "
            f"{how} {HOW_TO_OPT_IN}")


@functools.lru_cache(maxsize=None)
def _mapped_ranges(name: str) -> list[tuple[int, int]]:
    """(first id, count) of each range of ids this process's user namespace maps ("uid_map" or "gid_map")."""
    try:
        rows = Path(f"/proc/self/{name}").read_text().split("\n")
    except OSError:
        return [(0, 1 << 32)]
    return [(int(row.split()[0]), int(row.split()[2])) for row in rows if row.strip()]


def fresh_uid() -> int:
    """A user (and group) id no account uses, for one root run: far above real accounts on a real root, or from the
    top half of the ids a user namespace maps (root in a rootless container maps fewer than UID_BASE)."""
    def mapped(i: int) -> bool:
        return all(any(first <= i < first + count for first, count in _mapped_ranges(name))
                   for name in ("uid_map", "gid_map"))

    candidate = UID_BASE + secrets.randbelow(1 << 24)
    if mapped(candidate):
        return candidate
    for first, count in sorted(_mapped_ranges("uid_map"), key=lambda r: -r[1]):
        if count >= 4096:
            candidate = first + count // 2 + secrets.randbelow(count // 2 - 2)  # not the range's last ids (nobody)
            if mapped(candidate):
                return candidate
    raise SandboxUnavailable("running as root in a user namespace that maps no spare user id (fewer than 4096 ids); "
                             "map a range of ids into it (for example subuids for a rootless container)")
