"""The hostile suite: programs that try what model-written code could do to a machine, and checks that nothing happened.

The suite first sets bait on the machine: canary files and folders in /tmp, in the home folder and in the repository
(the current folder), a TCP server on the loopback address, a Unix socket file and an abstract one, a bystander
process of the same user with a secret in its environment and command line, and the same secret in the suite's own
environment. Then it runs each program in the sandbox and checks, after every one: its status is the one the sandbox
should give (a program that did not run proves nothing, so attacks must run to their end); every canary is unchanged
and nothing new appeared beside them; no server accepted a connection; no process the program started is alive; the
secret is nowhere in the output; the bystander lives; the machine's shared memory is back where it was. The memory
attacks (System V shared memory, memfds, tmpfs inodes, memory spread over processes) also report what they managed
to hold while running, and are held to the bound the README states.

The canaries are world-writable, so that file permissions (root's separate user id) are not what saves them;
isolation must. To stay safe on a shared machine, each lives in a folder of its own that others may pass through but
not list (mode 0711), under a random name: other users cannot find, let alone change, them; the Unix socket too.
Nothing listens on an address other machines reach, and the checks never follow a symbolic link. The programs aim
only at the bait, so even a broken sandbox harms nothing else.

Used by the tests (as root and as an ordinary user, through each backend) and by ``infertune doctor``. From a shell:
``python -m infertune.tasks.grading.hostile [--backend B]`` prints one JSON object and exits 1 if a case did not hold.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from infertune.tasks.grading.sandbox import (SandboxConfig, SandboxResult, SandboxUnavailable, capabilities,
                                             choose_backend, run, run_memory_mb)

SECRET_VAR = "INFERTUNE_HOSTILE_SECRET"
DONE = "attack finished"
SHMEM_SLACK_KB = 64 << 10  # other work on the machine moves Shmem a little; a leftover segment moves it a lot


@dataclass
class Bait:
    """What the hostile programs aim at, on the machine."""

    token: str
    secret: str
    places: dict[str, Path]  # where canaries live: "tmp", "home", "repo" -> the folder holding the bait's folder
    hidden: str  # the random name of each canary folder, inside a folder others cannot list
    port: int
    unix_path: str
    abstract_name: str
    bystander_pid: int
    supervisor_pid: int
    servers: list[socket.socket] = field(default_factory=list)
    snapshot: dict[str, dict[str, object]] = field(default_factory=dict)
    shmem_kb: int = 0

    def private(self, place: str) -> Path:
        """The bait's own folder in ``place``: mode 0711, so others cannot list it."""
        return self.places[place] / f".infertune-hostile-{self.token}"

    def canary(self, place: str) -> Path:
        return self.private(place) / f"canary-{self.hidden}"

    def stray(self, place: str) -> Path:
        """A file the attacks try to create right in ``place``; the bait never creates it."""
        return self.places[place] / f"infertune-pwned-{self.token}"


def _files(folder: Path) -> dict[str, object]:
    """Every entry below ``folder``, without following symbolic links: a file's bytes, a link's target, a folder."""
    found: dict[str, object] = {}
    for top, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            path = os.path.join(top, name)
            rel = os.path.relpath(path, folder)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(mode):
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                with os.fdopen(fd, "rb") as fh:
                    found[rel] = fh.read(1 << 16)
            elif not stat.S_ISDIR(mode):
                found[rel] = ("special", stat.S_IFMT(mode))
    return found


def _writable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def shmem_kb() -> int:
    """The machine's shared memory (System V, tmpfs, memfds) from /proc/meminfo, in kB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Shmem:"):
            return int(line.split()[1])
    return 0


@contextmanager
def bait(repo: Path | None = None) -> Iterator[Bait]:
    """Set the bait, yield it, and remove every trace of it afterwards."""
    token, hidden, secret = secrets.token_hex(6), secrets.token_hex(12), "sk-" + secrets.token_hex(16)
    candidates = {"tmp": Path("/tmp"), "home": Path.home(), "repo": (repo or Path.cwd()).resolve()}
    places: dict[str, Path] = {}
    for name, path in candidates.items():  # one canary per folder (run from /tmp, the repository is /tmp)
        if _writable(path) and path.resolve() not in {p.resolve() for p in places.values()}:
            places[name] = path
    made: list[Path] = []
    servers: list[socket.socket] = []
    bystander = None
    previous = os.environ.get(SECRET_VAR)
    try:
        for place, path in places.items():
            private = path / f".infertune-hostile-{token}"
            private.mkdir(mode=0o700)
            made.append(private)
            private.chmod(0o711)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        servers.append(tcp)
        tcp.bind(("127.0.0.1", 0))
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        servers.append(unix)
        unix_path = str(Path("/tmp") / f".infertune-hostile-{token}" / f"socket-{hidden}")
        if "tmp" not in places:
            raise OSError("/tmp is not writable: the hostile suite needs it for its Unix socket")
        unix.bind(unix_path)
        os.chmod(unix_path, 0o777)
        abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        servers.append(abstract)
        abstract.bind(f"\0infertune-{token}")
        for server in servers:
            server.listen(8)
            server.setblocking(False)
        bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", secret],
                                     env={SECRET_VAR: secret}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        os.environ[SECRET_VAR] = secret
        b = Bait(token, secret, places, hidden, tcp.getsockname()[1], unix_path, f"infertune-{token}",
                 bystander.pid, os.getpid(), servers)
        for place in places:
            folder = b.canary(place)
            (folder / "sub").mkdir(parents=True)
            for path in (folder / "keep.txt", folder / "sub" / "keep.txt"):
                path.write_text(f"precious {token}")
                path.chmod(0o666)
            for path in (folder, folder / "sub"):
                path.chmod(0o777)
            b.snapshot[place] = _files(folder)
        b.shmem_kb = shmem_kb()
        yield b
    finally:
        if previous is None:
            os.environ.pop(SECRET_VAR, None)
        else:
            os.environ[SECRET_VAR] = previous
        if bystander is not None:
            bystander.kill()
            bystander.wait()
        for server in servers:
            server.close()
        for private in made:
            shutil.rmtree(private, ignore_errors=True)  # never follows a link out of the folder
        for path in places.values():
            stray = path / f"infertune-pwned-{token}"
            if stray.is_symlink() or stray.is_file():
                stray.unlink()


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line holds ``marker``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
            state = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def harm_done(b: Bait, result: SandboxResult) -> list[str]:
    """Everything the program changed outside the sandbox (the checks made after every case)."""
    problems = []
    for place, before in b.snapshot.items():
        folder = b.canary(place)
        after = _files(folder) if folder.is_dir() and not folder.is_symlink() else {}
        if after != before:
            problems.append(f"canary in {place} ({folder}) changed: {sorted(before)} -> {sorted(after)}")
        if b.stray(place).exists() or b.stray(place).is_symlink():
            problems.append(f"file created in {place}: {b.stray(place)}")
    for server in b.servers:
        try:
            conn, _ = server.accept()
            conn.close()
            problems.append(f"a connection reached the bait server {server.getsockname()!r}")
        except (BlockingIOError, OSError):
            pass
    left = processes_with(b.token)
    if left:
        problems.append(f"processes outlived the run: {left}")
    if b.secret in result.stdout or b.secret in result.stderr:
        problems.append("the secret leaked into the program's output")
    try:
        os.kill(b.bystander_pid, 0)
    except ProcessLookupError:
        problems.append("the bystander process was killed")
    grown = shmem_kb() - b.shmem_kb
    if grown > SHMEM_SLACK_KB:
        problems.append(f"the machine holds {grown >> 10} MB more shared memory after the run")
    return problems


# --- the cases -----------------------------------------------------------------------------------------------------

Check = Callable[[SandboxResult, Bait, SandboxConfig], "str | None"]


def ran_to_the_end(result: SandboxResult, b: Bait, config: SandboxConfig | None = None) -> str | None:
    if result.status != "passed" or DONE not in result.stdout:
        return f"the attack did not run to its end ({result.status}: {result.detail})"
    return None


def status_is(*statuses: str) -> Check:
    def check(result: SandboxResult, b: Bait, config: SandboxConfig) -> str | None:
        return None if result.status in statuses else f"status {result.status} ({result.detail}), not {statuses}"
    return check


@dataclass(frozen=True)
class Case:
    name: str
    attack: str
    program: Callable[[Bait], str]
    check: Check = ran_to_the_end
    limits: dict = field(default_factory=dict)
    place: str | None = None  # the canary folder it attacks; the case is skipped where there is none


def _spawn_marked(b: Bait, code: str) -> str:
    """Python that replaces the current process by ``code``, with the token in its command line."""
    return f"os.execv(sys.executable, [sys.executable, '-I', '-S', '-c', {code!r}, {b.token!r}])"


def _attempts(actions: list[str]) -> str:
    """A program that tries each action, reports which worked, and ends with DONE."""
    lines = ["import os, shutil, socket, sys", "worked = []"]
    for action in actions:
        lines += ["try:", f"    {action}", f"    worked.append({action!r})", "except Exception:", "    pass"]
    return "\n".join(lines + ["print('worked:', worked)", f"print({DONE!r})"])


def _write_attacks(b: Bait, place: str) -> list[str]:
    if place not in b.places:
        return []
    folder = b.canary(place)
    return [f"open({str(folder / 'keep.txt')!r}, 'w').write('owned')",
            f"open({str(folder / 'new.txt')!r}, 'w').write('owned')",
            f"open({str(b.stray(place))!r}, 'w').write('owned')"]


def _delete_attacks(b: Bait, place: str) -> list[str]:
    if place not in b.places:
        return []
    folder = b.canary(place)
    return [f"os.remove({str(folder / 'sub' / 'keep.txt')!r})", f"shutil.rmtree({str(folder)!r})"]


def _fork_bomb(b: Bait) -> str:
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    return "import os, sys\n" + _spawn_marked(b, bomb)


def _escapee(b: Bait) -> str:
    return "\n".join([
        "import os, sys, time",
        "if os.fork() == 0:",
        "    os.setsid()",
        "    if os.fork() == 0:",
        "        " + _spawn_marked(b, "import time; time.sleep(600)"),
        "    os._exit(0)",
        "time.sleep(0.3)",
        f"print({DONE!r})",
    ])


def _secrets(b: Bait) -> str:
    return "\n".join([
        "import os",
        "print(dict(os.environ))",
        "pids = [p for p in os.listdir('/proc') if p.isdigit()]",
        f"for pid in pids + [{str(b.supervisor_pid)!r}, {str(b.bystander_pid)!r}]:",
        "    for part in ('environ', 'cmdline'):",
        "        try:",
        "            print(pid, part, open(f'/proc/{pid}/{part}', 'rb').read())",
        "        except OSError as exc:",
        "            print(pid, part, type(exc).__name__)",
        f"print({DONE!r})",
    ])


def _connect(b: Bait) -> str:
    return _attempts([f"socket.create_connection(({host!r}, {b.port}), timeout=1).sendall(b'leak')"
                      for host in ("127.0.0.1", "localhost")])


def _unix(b: Bait) -> str:
    return _attempts([f"s = socket.socket(socket.AF_UNIX); s.settimeout(1); s.connect({path!r}); s.sendall(b'leak')"
                      for path in (b.unix_path, "\0" + b.abstract_name)])


def _kill_parent(b: Bait) -> str:
    return _attempts([f"os.kill({pid}, 9)" for pid in ("os.getppid()", b.supervisor_pid, b.bystander_pid)])


def _fill_disk(b: Bait) -> str:
    return "\n".join([
        "import os",
        "total = 0",
        "try:",
        "    for i in range(64):",
        "        with open(f'/tmp/fill-{i}', 'wb') as fh:",
        "            for _ in range(8):",
        "                fh.write(b'x' * (1 << 20))",
        "                total += 1 << 20",
        "except OSError as exc:",
        "    print(type(exc).__name__)",
        "print('written', total)",
        f"print({DONE!r})",
    ])


FILL_TMPFS_MB = 32


def _filled_at_most_the_tmpfs(result: SandboxResult, b: Bait, config: SandboxConfig) -> str | None:
    problem = ran_to_the_end(result, b)
    if problem:
        return problem
    written = int(result.stdout.split("written", 1)[1].split()[0])
    cap = FILL_TMPFS_MB << 20
    return None if written <= cap else f"wrote {written} bytes, past the {cap}-byte tmpfs cap"


def _remount(b: Bait) -> str:
    """Try to make the read-only view writable: directly, and with the capabilities of a nested user namespace."""
    return "\n".join([
        "import ctypes, os, sys",
        "libc = ctypes.CDLL(None, use_errno=True)",
        "paths = ['/', '/usr', sys.prefix, '/tmp/work']",
        "def remount(path):",
        "    return libc.mount(None, path.encode(), None, 32 | 4096, None) == 0  # MS_REMOUNT | MS_BIND, read-write",
        "print('direct', [p for p in paths[:3] if remount(p)])",
        "uid, gid = os.getuid(), os.getgid()",
        "if libc.unshare(0x10000000 | 0x00020000) == 0:",
        "    open('/proc/self/setgroups', 'w').write('deny')",
        "    open('/proc/self/uid_map', 'w').write(f'0 {uid} 1')",
        "    open('/proc/self/gid_map', 'w').write(f'0 {gid} 1')",
        "    print('nested', [p for p in paths[:3] if remount(p)])",
        "else:",
        "    print('nested none: unshare failed', ctypes.get_errno())",
        f"print({DONE!r})",
    ])


def _no_remount(result: SandboxResult, b: Bait, config: SandboxConfig) -> str | None:
    problem = ran_to_the_end(result, b)
    if problem:
        return problem
    bad = [line for line in result.stdout.splitlines() if line.startswith(("direct", "nested ")) and "[]" not in line
           and "unshare failed" not in line]
    return f"read-only mounts became writable: {bad}" if bad else None


HOST_SHMEM = ("def host_shmem():\n"
              "    return [int(l.split()[1]) for l in open('/proc/meminfo') if l.startswith('Shmem:')][0]\n")


def _shm_bomb(b: Bait) -> str:
    """2 GB of System V shared memory in 128 MB segments, each attached, written and detached (it then counts for no
    process's address space), held until the end."""
    return HOST_SHMEM + "\n".join([
        "import ctypes",
        "libc = ctypes.CDLL(None, use_errno=True)",
        "libc.shmat.restype = ctypes.c_void_p",
        "libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]",
        "libc.shmdt.argtypes = [ctypes.c_void_p]",
        "before, held = host_shmem(), 0",
        "for _ in range(16):",
        "    sid = libc.shmget(0, ctypes.c_size_t(128 << 20), 0o1600)",
        "    if sid < 0:",
        "        print('shmget refused, errno', ctypes.get_errno())",
        "        break",
        "    address = libc.shmat(sid, None, 0)",
        "    if address in (None, ctypes.c_void_p(-1).value):",
        "        break",
        "    ctypes.memset(address, 1, 128 << 20)",
        "    libc.shmdt(ctypes.c_void_p(address))",
        "    held += 128",
        "print('held', held, 'MB; the machine shared', (host_shmem() - before) >> 10, 'MB more')",
        f"print({DONE!r})",
    ])


def _memfd_bomb(b: Bait) -> str:
    """100 memfds of 15 MB each (every one under the file-size limit), kept open."""
    return HOST_SHMEM + "\n".join([
        "import os",
        "before, fds = host_shmem(), []",
        "try:",
        "    for i in range(100):",
        "        fd = os.memfd_create(f'hold{i}')",
        "        os.posix_fallocate(fd, 0, 15 << 20)",
        "        fds.append(fd)",
        "except OSError as exc:",
        "    print('memfd refused:', exc)",
        "print('held', 15 * len(fds), 'MB; the machine shared', (host_shmem() - before) >> 10, 'MB more')",
        f"print({DONE!r})",
    ])


def _inode_bomb(b: Bait) -> str:
    """Empty folders with long names in /tmp and /dev/shm until refused (or 2 s): kernel memory, no tmpfs bytes."""
    return "\n".join([
        "import os, time",
        "def slab():",
        "    return [int(l.split()[1]) for l in open('/proc/meminfo') if l.startswith('Slab:')][0]",
        "before, total, end = slab(), 0, time.monotonic() + 2",
        "for top in ('/tmp', '/dev/shm'):",
        "    made = 0",
        "    try:",
        "        while time.monotonic() < end:",
        "            for _ in range(200):",
        "                os.mkdir(f'{top}/{\"x\" * 200}{made}')",
        "                made += 1",
        "    except OSError as exc:",
        "        print(top, 'refused after', made, 'folders:', exc.strerror)",
        "    total += made",
        "print('made', total, 'folders; the machine\\'s slab', (slab() - before) >> 10, 'MB more')",
        f"print({DONE!r})",
    ])


SPREAD = {"max_processes": 8, "memory_mb": 128, "tmpfs_mb": 16, "timeout_s": 10.0}
SPREAD_PROCESSES, SPREAD_BLOCK_MB = 4, 80


def _spread(b: Bait) -> str:
    """Four processes, each under its own address-space limit, together holding 320 MB."""
    return "\n".join([
        "import os, time",
        "def hold():",
        f"    block = bytearray({SPREAD_BLOCK_MB} << 20)",
        "    for i in range(0, len(block), 4096):",
        "        block[i] = 1",
        "    return block",
        "children = []",
        f"for _ in range({SPREAD_PROCESSES} - 1):",
        "    pid = os.fork()",
        "    if pid == 0:",
        "        hold()",
        "        time.sleep(1)",
        "        os._exit(0)",
        "    children.append(pid)",
        "mine = hold()",
        "ok = 1 + sum(os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) == 0 for p in children)",
        f"print('held', ok * {SPREAD_BLOCK_MB}, 'MB')",
        f"print({DONE!r})",
    ])


def _held_mb(result: SandboxResult) -> int:
    for line in result.stdout.splitlines():
        if line.startswith("held "):
            return int(line.split()[1])
    return 0


def held_at_most(bound_mb: Callable[[SandboxResult, SandboxConfig], int]) -> Check:
    """The attack ran to its end holding no more than the stated bound; or the memory cgroup stopped it."""
    def check(result: SandboxResult, b: Bait, config: SandboxConfig) -> str | None:
        if result.status == "memory" and "memory_cgroup" in result.protections:
            return None
        problem = ran_to_the_end(result, b, config)
        if problem:
            return problem
        bound = bound_mb(result, config)
        held = _held_mb(result)
        return None if held <= bound else f"held {held} MB outside the address-space limit, past the {bound} MB bound"
    return check


def _files_at_most_the_inode_caps(result: SandboxResult, b: Bait, config: SandboxConfig) -> str | None:
    problem = ran_to_the_end(result, b, config)
    if problem:
        return problem
    made = int(result.stdout.split("made", 1)[1].split()[0])
    cap = 2 * config.tmpfs_inodes
    return None if made <= cap else f"made {made} folders, past the 2 x {config.tmpfs_inodes} inodes of the tmpfs"


def _tmpfs_bound(result: SandboxResult, config: SandboxConfig) -> int:
    """Outside the address-space limits, files in its two tmpfs mounts are all a run may hold."""
    return 2 * config.tmpfs_mb


def _spread_bound(result: SandboxResult, config: SandboxConfig) -> int:
    """Without a memory cgroup, each process has its own address-space limit: max_processes x memory_mb."""
    if "memory_cgroup" in result.protections:
        return run_memory_mb(config)
    return config.max_processes * config.memory_mb


CASES: tuple[Case, ...] = (
    Case("infinite_loop", "loops forever", lambda b: "while True:\n    pass", status_is("timeout"),
         {"timeout_s": 1.0}),
    Case("fork_bomb", "forks until the process limit, forever", _fork_bomb, status_is("timeout", "error"),
         {"timeout_s": 2.0}),
    Case("setsid_escapee", "leaves a double-forked, setsid child running after it exits", _escapee),
    Case("silent_hang", "closes its output, then sleeps", lambda b: "import os, time\nos.close(1)\nos.close(2)\n"
         "time.sleep(600)", lambda r, b, c: None if r.status == "timeout" and r.duration_s < 5 else
         f"status {r.status} after {r.duration_s:.1f} s, not a timeout after 1 s", {"timeout_s": 1.0}),
    Case("memory_bomb", "allocates 8 GB", lambda b: "x = bytearray(8 * 1024 ** 3)", status_is("memory"),
         {"memory_mb": 256}),
    Case("output_flood", "prints without end", lambda b: "while True:\n    print('y' * 10000)",
         lambda r, b, c: None if r.status == "error" and r.truncated else f"status {r.status}, not a cut-off flood",
         {"max_output_bytes": 100_000}),
    Case("tmp_write", "overwrites and creates files in /tmp", lambda b: _attempts(_write_attacks(b, "tmp")),
         place="tmp"),
    Case("tmp_delete", "deletes a folder in /tmp", lambda b: _attempts(_delete_attacks(b, "tmp")),
         place="tmp"),
    Case("home_write", "overwrites and creates files in the home folder",
         lambda b: _attempts(_write_attacks(b, "home")),
         place="home"),
    Case("home_delete", "deletes a folder in the home folder", lambda b: _attempts(_delete_attacks(b, "home")),
         place="home"),
    Case("repo_write", "overwrites and creates files in the repository",
         lambda b: _attempts(_write_attacks(b, "repo")),
         place="repo"),
    Case("repo_delete", "deletes a folder in the repository", lambda b: _attempts(_delete_attacks(b, "repo")),
         place="repo"),
    Case("environment_secrets", "reads its environment and every process's environment and command line",
         _secrets),
    Case("loopback_tcp", "connects to a TCP server on the machine's loopback address", _connect),
    Case("unix_sockets", "connects to a Unix socket file and an abstract Unix socket", _unix),
    Case("kill_parent", "kills its parent, the supervisor and a process of the same user", _kill_parent),
    Case("fill_disk", "writes 512 MB into /tmp", _fill_disk, _filled_at_most_the_tmpfs,
         {"max_file_mb": 8, "tmpfs_mb": FILL_TMPFS_MB}),
    Case("remount_writable", "remounts the read-only view writable, also from a nested user namespace", _remount,
         _no_remount),
    Case("shm_bomb", "holds 2 GB of System V shared memory under a 256 MB limit", _shm_bomb,
         held_at_most(_tmpfs_bound)),
    Case("memfd_bomb", "holds 100 memfds of 15 MB each", _memfd_bomb, held_at_most(_tmpfs_bound)),
    Case("inode_bomb", "fills /tmp and /dev/shm with empty folders (kernel memory, no tmpfs bytes)", _inode_bomb,
         _files_at_most_the_inode_caps),
    Case("spread_memory", "holds 80 MB in each of 4 processes under a 128 MB limit each", _spread,
         held_at_most(_spread_bound), SPREAD),
)


@dataclass(frozen=True)
class Outcome:
    case: str
    attack: str
    held: bool
    status: str
    seconds: float
    problems: tuple[str, ...]


@dataclass(frozen=True)
class SuiteReport:
    backend: str
    uid: int
    protections: tuple[str, ...]
    outcomes: tuple[Outcome, ...]
    seconds: float

    @property
    def held(self) -> bool:
        return all(o.held for o in self.outcomes)

    def to_json(self) -> dict:
        return {"backend": self.backend, "uid": self.uid, "protections": list(self.protections),
                "held": self.held, "cases": len(self.outcomes), "cases_held": sum(o.held for o in self.outcomes),
                "seconds": round(self.seconds, 2), "outcomes": [asdict(o) for o in self.outcomes]}


# A case with no time limit of its own must run to its end well inside this one; the cases about time set theirs
# (1 to 2 s). It was 3 s until a loaded 2-core machine, its hypervisor taking most of the CPU time, stopped the
# remount case (a Python start-up and three mount calls) at 3.96 s; a verdict must not depend on the machine's load.
SUITE_LIMITS = {"timeout_s": 10.0, "memory_mb": 256}


def run_case(case: Case, config: SandboxConfig, repo: Path | None = None) -> Outcome:
    """One case with bait of its own, so that each verdict stands alone. Nothing here checks that ``config``
    isolates: without isolation the program really attacks the bait (the tests use that to show the checks bite)."""
    start = time.monotonic()
    with bait(repo) as b:
        if case.place is not None and case.place not in b.places:
            return Outcome(case.name, case.attack, True, f"skipped: no writable {case.place} folder here", 0.0, ())
        case_config = replace(config, **case.limits)
        result = run(case.program(b), config=case_config)
        problems = harm_done(b, result)
    problem = case.check(result, b, case_config)
    if problem:
        problems.insert(0, problem)
    return Outcome(case.name, case.attack, not problems, result.status, round(time.monotonic() - start, 3),
                   tuple(problems))


def run_suite(config: SandboxConfig | None = None, cases: tuple[Case, ...] = CASES,
              repo: Path | None = None) -> SuiteReport:
    """Run every case in the sandbox and check for harm after each. Refuses to run without isolation: the
    programs would then really do what they try (to the bait only, but still)."""
    base = replace(config or SandboxConfig(), **SUITE_LIMITS)
    backend = choose_backend(base)
    if backend == "none":
        raise SandboxUnavailable("the hostile suite runs only in an isolated sandbox; no isolation works here")
    start = time.monotonic()
    outcomes = tuple(run_case(case, base, repo) for case in cases)
    granted = tuple(name for name, on in capabilities(base).items() if on)
    return SuiteReport(backend, os.getuid(), granted, outcomes, time.monotonic() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="auto", help="auto, bwrap or unshare")
    parser.add_argument("--repo", type=Path, default=None, help="Folder standing for the repository (default: .)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    report = run_suite(SandboxConfig(backend=args.backend), repo=args.repo)
    print(json.dumps(report.to_json()))
    return 0 if report.held else 1


if __name__ == "__main__":
    sys.exit(main())
