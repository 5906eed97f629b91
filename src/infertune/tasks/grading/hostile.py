"""The hostile suite: programs that try what model-written code could do to a machine, and checks that nothing happened.

The suite first sets bait on the machine: world-writable canary files and folders in /tmp, in the home folder and
in the repository (the current folder), a TCP server listening on every address, a Unix socket file and an abstract
one, a bystander process of the same user with a secret in its environment and command line, and the same secret in
the suite's own environment. Then it runs each program in the sandbox and checks, after every one: its status is
the one the sandbox should give (a program that did not run proves nothing, so attacks must run to their end); every
canary is unchanged and nothing new appeared beside them; no server accepted a connection; no process the program
started is alive; the secret is nowhere in the output; the bystander lives.

The bait is world-writable and world-connectable on purpose: file permissions (root's separate user id) must not be
what saves it; isolation must. The programs aim only at the bait, so even a broken sandbox harms nothing else.

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
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from infertune.tasks.grading.isolation import protections
from infertune.tasks.grading.sandbox import SandboxConfig, SandboxResult, SandboxUnavailable, choose_backend, run

SECRET_VAR = "INFERTUNE_HOSTILE_SECRET"
DONE = "attack finished"


@dataclass
class Bait:
    """What the hostile programs aim at, on the machine."""

    token: str
    secret: str
    places: dict[str, Path]  # where canaries live: "tmp", "home", "repo" -> the folder holding the canary folder
    port: int
    host_addresses: list[str]
    unix_path: str
    abstract_name: str
    bystander_pid: int
    supervisor_pid: int
    servers: list[socket.socket] = field(default_factory=list)
    snapshot: dict[str, dict[str, bytes]] = field(default_factory=dict)

    def canary(self, place: str) -> Path:
        return self.places[place] / f"infertune-canary-{self.token}"

    def stray(self, place: str) -> Path:
        return self.places[place] / f"infertune-pwned-{self.token}"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _writable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


@contextmanager
def bait(repo: Path | None = None) -> Iterator[Bait]:
    """Set the bait, yield it, and remove every trace of it afterwards."""
    token, secret = secrets.token_hex(6), "sk-" + secrets.token_hex(16)
    candidates = {"tmp": Path("/tmp"), "home": Path.home(), "repo": (repo or Path.cwd()).resolve()}
    places: dict[str, Path] = {}
    for name, path in candidates.items():  # one canary per folder (run from /tmp, the repository is /tmp)
        if _writable(path) and path.resolve() not in {p.resolve() for p in places.values()}:
            places[name] = path
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("0.0.0.0", 0))
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix_path = f"/tmp/infertune-socket-{token}"
    unix.bind(unix_path)
    os.chmod(unix_path, 0o777)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(f"\0infertune-{token}")
    for server in (tcp, unix, abstract):
        server.listen(8)
        server.setblocking(False)
    try:
        addresses = [a for a in socket.gethostbyname_ex(socket.gethostname())[2] if not a.startswith("127.")]
    except OSError:
        addresses = []
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", secret],
                                 env={SECRET_VAR: secret}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    previous = os.environ.get(SECRET_VAR)
    os.environ[SECRET_VAR] = secret
    b = Bait(token, secret, places, tcp.getsockname()[1], addresses, unix_path, f"infertune-{token}",
             bystander.pid, os.getpid(), [tcp, unix, abstract])
    try:
        for place in places:
            folder = b.canary(place)
            (folder / "sub").mkdir(parents=True)
            for path in (folder / "keep.txt", folder / "sub" / "keep.txt"):
                path.write_text(f"precious {token}")
                path.chmod(0o666)
            for path in (folder, folder / "sub"):
                path.chmod(0o777)
            b.snapshot[place] = _files(folder)
        yield b
    finally:
        if previous is None:
            os.environ.pop(SECRET_VAR, None)
        else:
            os.environ[SECRET_VAR] = previous
        bystander.kill()
        bystander.wait()
        for server in b.servers:
            server.close()
        Path(unix_path).unlink(missing_ok=True)
        for place in places:
            shutil.rmtree(b.canary(place), ignore_errors=True)
            b.stray(place).unlink(missing_ok=True)


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
        after = _files(folder) if folder.is_dir() else {}
        if after != before:
            problems.append(f"canary in {place} ({folder}) changed: {sorted(before)} -> {sorted(after)}")
        if b.stray(place).exists():
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
    return problems


# --- the cases -----------------------------------------------------------------------------------------------------

Check = Callable[[SandboxResult, Bait], "str | None"]


def ran_to_the_end(result: SandboxResult, b: Bait) -> str | None:
    if result.status != "passed" or DONE not in result.stdout:
        return f"the attack did not run to its end ({result.status}: {result.detail})"
    return None


def status_is(*statuses: str) -> Check:
    def check(result: SandboxResult, b: Bait) -> str | None:
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
    targets = ["127.0.0.1", "localhost"] + b.host_addresses
    return _attempts([f"socket.create_connection(({host!r}, {b.port}), timeout=1).sendall(b'leak')"
                      for host in targets])


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


def _filled_at_most_the_tmpfs(result: SandboxResult, b: Bait) -> str | None:
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


def _no_remount(result: SandboxResult, b: Bait) -> str | None:
    problem = ran_to_the_end(result, b)
    if problem:
        return problem
    bad = [line for line in result.stdout.splitlines() if line.startswith(("direct", "nested ")) and "[]" not in line
           and "unshare failed" not in line]
    return f"read-only mounts became writable: {bad}" if bad else None


CASES: tuple[Case, ...] = (
    Case("infinite_loop", "loops forever", lambda b: "while True:\n    pass", status_is("timeout"),
         {"timeout_s": 1.0}),
    Case("fork_bomb", "forks until the process limit, forever", _fork_bomb, status_is("timeout", "error"),
         {"timeout_s": 2.0}),
    Case("setsid_escapee", "leaves a double-forked, setsid child running after it exits", _escapee),
    Case("silent_hang", "closes its output, then sleeps", lambda b: "import os, time\nos.close(1)\nos.close(2)\n"
         "time.sleep(600)", lambda r, b: None if r.status == "timeout" and r.duration_s < 5 else
         f"status {r.status} after {r.duration_s:.1f} s, not a timeout after 1 s", {"timeout_s": 1.0}),
    Case("memory_bomb", "allocates 8 GB", lambda b: "x = bytearray(8 * 1024 ** 3)", status_is("memory"),
         {"memory_mb": 256}),
    Case("output_flood", "prints without end", lambda b: "while True:\n    print('y' * 10000)",
         lambda r, b: None if r.status == "error" and r.truncated else f"status {r.status}, not a cut-off flood",
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
    Case("loopback_tcp", "connects to a TCP server on loopback and on the machine's addresses", _connect),
    Case("unix_sockets", "connects to a Unix socket file and an abstract Unix socket", _unix),
    Case("kill_parent", "kills its parent, the supervisor and a process of the same user", _kill_parent),
    Case("fill_disk", "writes 512 MB into /tmp", _fill_disk, _filled_at_most_the_tmpfs,
         {"max_file_mb": 8, "tmpfs_mb": FILL_TMPFS_MB}),
    Case("remount_writable", "remounts the read-only view writable, also from a nested user namespace", _remount,
         _no_remount),
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


SUITE_LIMITS = {"timeout_s": 3.0, "memory_mb": 256}


def run_case(case: Case, config: SandboxConfig, repo: Path | None = None) -> Outcome:
    """One case with bait of its own, so that each verdict stands alone. Nothing here checks that ``config``
    isolates: without isolation the program really attacks the bait (the tests use that to show the checks bite)."""
    start = time.monotonic()
    with bait(repo) as b:
        if case.place is not None and case.place not in b.places:
            return Outcome(case.name, case.attack, True, f"skipped: no writable {case.place} folder here", 0.0, ())
        result = run(case.program(b), config=replace(config, **case.limits))
        problems = harm_done(b, result)
    problem = case.check(result, b)
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
    return SuiteReport(backend, os.getuid(), protections(backend, os.geteuid() == 0), outcomes,
                       time.monotonic() - start)


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
