"""A memory cgroup per run, where this machine lets us make one: the only cap on all of a run's memory together.

RLIMIT_AS limits each process's address space. It does not count System V shared memory, memfds, tmpfs files or
kernel memory (inodes, dentries, socket buffers), and every process of the run has its own. A memory cgroup counts
all of it, for all the run's processes together, and the kernel's OOM killer ends the run when it goes over.

Where a group can be made:

- ``$INFERTUNE_CGROUP``: a cgroup folder you may write (cgroup v2: its controllers include memory, it holds no
  process, so that memory can be enabled for its children; v1: a folder of the memory hierarchy). One way, as an
  ordinary user under systemd, is in the README.
- cgroup v1 (a memory hierarchy of its own): a child of this process's own memory cgroup, when that folder is
  writable (root, or delegated).
- cgroup v2: a child of this process's own cgroup when memory is already enabled for its children; as root, a
  child of ``infertune.sandbox`` below the root of the hierarchy when the root enables memory for its children.

Otherwise there is no group, runs go on without one, and ``capabilities()`` and each result leave out
``memory_cgroup``. A process enters its group through ``/bin/sh`` (``enter_argv``), which writes its own pid and then
execs the launcher or bubblewrap, so everything the run starts is charged to the group from its first page.
"""

from __future__ import annotations

import functools
import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ENV_CGROUP = "INFERTUNE_CGROUP"
HUB = "infertune.sandbox"  # cgroup v2 as root: the runs' groups live below the root, in this folder
ENTER = 'echo $$ > "$0" 2>/dev/null || { echo "sandbox-launch-error: cannot enter the memory cgroup $0" >&2; ' \
        'exit 121; }; exec "$@"'


@dataclass(frozen=True)
class Base:
    """A folder in which a group per run can be made."""

    path: Path
    version: int  # 1 or 2


def _mounts() -> list[tuple[str, str, str, str]]:
    """(root within the hierarchy, mount point, file system type, super options) of every cgroup mount."""
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            found.append((fields[3], fields[4].replace("\\040", " "), tail[0], tail[2]))
    return found


def _own_groups() -> dict[str, str]:
    """This process's cgroup path per hierarchy: "memory" (v1) and "" (v2)."""
    groups = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return groups
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(","):
            groups[name] = path
    return groups


def _inside(mount_root: str, mount_point: str, group: str) -> Path | None:
    """Where ``group`` (a path in the hierarchy) appears below a mount of the hierarchy's ``mount_root``."""
    if mount_root != "/" and not (group + "/").startswith(mount_root.rstrip("/") + "/"):
        return None
    return Path(mount_point) / os.path.relpath(group, mount_root)


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _v2_ready(path: Path) -> bool:
    """Memory is enabled for the children of ``path``, or can be (we may write it, and it holds no process)."""
    if "memory" in _read(path / "cgroup.subtree_control").split():
        return True
    if "memory" not in _read(path / "cgroup.controllers").split() or not _writable(path):
        return False
    try:
        (path / "cgroup.subtree_control").write_text("+memory")
    except OSError:
        return False
    return "memory" in _read(path / "cgroup.subtree_control").split()


def _candidates() -> list[Base]:
    groups, mounts, found = _own_groups(), _mounts(), []
    for root, point, fstype, options in mounts:
        if fstype == "cgroup" and "memory" in options.split(",") and "memory" in groups:
            path = _inside(root, point, groups["memory"])
            if path is not None and _writable(path):
                found.append(Base(path, 1))
    for root, point, fstype, _ in mounts:
        if fstype != "cgroup2" or "" not in groups:
            continue
        path = _inside(root, point, groups[""])
        if path is not None and "memory" in _read(path / "cgroup.subtree_control").split() and _writable(path):
            found.append(Base(path, 2))
        if os.geteuid() == 0 and "memory" in _read(Path(point) / "cgroup.subtree_control").split():
            hub = Path(point) / HUB
            try:
                hub.mkdir(exist_ok=True)
            except OSError:
                continue
            if _v2_ready(hub):
                found.append(Base(hub, 2))
    return found


def _explicit(folder: str) -> Base:
    path = Path(folder)
    if (path / "memory.limit_in_bytes").exists():
        if not _writable(path):
            raise ValueError(f"${ENV_CGROUP}={folder}: this user cannot create cgroups there")
        return Base(path, 1)
    if not (path / "cgroup.controllers").exists():
        raise ValueError(f"${ENV_CGROUP}={folder} is not a cgroup folder (no cgroup.controllers)")
    if not _v2_ready(path):
        raise ValueError(f"${ENV_CGROUP}={folder}: memory cannot be enabled for its children (it must be writable "
                         "by this user, list memory in cgroup.controllers, and hold no process itself)")
    return Base(path, 2)


@functools.lru_cache(maxsize=1)
def available() -> Base | None:
    """The folder runs make their groups in, or None. Found once per process; a trial group is made and removed,
    and the empty groups of supervisors that were killed before they could remove theirs are swept away.

    Raises ValueError when ``$INFERTUNE_CGROUP`` is set but cannot be used: asked for, it must not be skipped.
    """
    folder = os.environ.get(ENV_CGROUP, "").strip()
    candidates = [_explicit(folder)] if folder else _candidates()
    for base in candidates:
        try:
            RunGroup(base, 64 << 20).close()
        except OSError:
            if folder:
                raise ValueError(f"${ENV_CGROUP}={folder}: a trial memory cgroup could not be made there")
            continue
        sweep(base)
        return base
    return None


def sweep(base: Base) -> list[Path]:
    """Remove the groups in ``base`` left by supervisors that no longer run (killed with SIGKILL, say); a group
    that still holds a process, or whose supervisor's pid is alive, stays. Returns what was removed."""
    removed = []
    for path in base.path.glob("infertune-*-*"):
        try:
            pid = int(path.name.split("-")[1])
        except ValueError:
            continue
        if pid == os.getpid() or Path(f"/proc/{pid}").exists():
            continue
        try:
            path.rmdir()  # fails, and keeps the group, while a process is in it
            removed.append(path)
        except OSError:
            pass
    return removed


class RunGroup:
    """One run's memory cgroup: made with its limit, entered by the run, read and removed after it."""

    def __init__(self, base: Base, limit_bytes: int) -> None:
        self.base = base
        self.path = base.path / f"infertune-{os.getpid()}-{secrets.token_hex(6)}"
        self.path.mkdir()
        try:
            if base.version == 2:
                (self.path / "memory.max").write_text(str(limit_bytes))
                for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                    if (self.path / name).exists():
                        (self.path / name).write_text(value)
            else:
                (self.path / "memory.limit_in_bytes").write_text(str(limit_bytes))
                if (self.path / "memory.memsw.limit_in_bytes").exists():  # memory and swap together: no swap
                    (self.path / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
        except OSError:
            self.close()
            raise

    def enter_argv(self, argv: list[str]) -> list[str]:
        """``argv`` started through /bin/sh, which first moves itself into this group."""
        return ["/bin/sh", "-c", ENTER, str(self.path / "cgroup.procs"), *argv]

    def oom_kills(self) -> int:
        """How many processes the OOM killer ended in this group (0 when the kernel does not say)."""
        text = _read(self.path / ("memory.events" if self.base.version == 2 else "memory.oom_control"))
        for line in text.splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def close(self) -> None:
        """Kill whatever is left in the group (nothing, normally: the PID namespace is gone) and remove it."""
        for attempt in range(100):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                pass
            if (self.path / "cgroup.kill").exists():
                try:
                    (self.path / "cgroup.kill").write_text("1")
                except OSError:
                    pass
            for pid in _read(self.path / "cgroup.procs").split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, PermissionError, ValueError):
                    pass
            time.sleep(0.01 if attempt < 50 else 0.05)
