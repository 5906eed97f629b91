"""The sandbox's parts that need no sandbox: the seccomp program (run through a small BPF interpreter), the file
system view, the protections a run claims, the memory cgroup's discovery and the harness's source handling."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest

from infertune.tasks.grading import cgroup, fsview, harness, syscall_filter
from infertune.tasks.grading.isolation import PROTECTIONS, Applied, protections
from infertune.tasks.grading.syscall_filter import (AUDIT_ARCH, CLONE_NEWUSER, ENOSYS, EPERM, NUMBERS, RET_ALLOW,
                                                    RET_ERRNO, RET_KILL_PROCESS)

CLONE_NEWNS, SIGCHLD = 0x00020000, 17


def decide(program: bytes, arch: int, nr: int, arg0: int = 0) -> int:
    """What the kernel would answer: a minimal classic-BPF interpreter for the instructions the filter uses."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, arg0, 0, 0, 0, 0, 0)
    insns = [struct.unpack("=HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == 0x20:  # ld [k]
            acc = struct.unpack_from("=I", data, k)[0]
            pc += 1
        elif code in (0x15, 0x35, 0x45):  # jeq, jge, jset
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += 1 + (jt if taken else jf)
        elif code == 0x06:  # ret k
            return k
        else:
            raise AssertionError(f"unexpected BPF instruction {code:#x}")


@pytest.mark.parametrize("machine", sorted(NUMBERS))
def test_the_filter_refuses_what_it_says_and_allows_the_rest(machine):
    program, numbers, arch = syscall_filter.program(machine), NUMBERS[machine], AUDIT_ARCH[machine]
    for name in syscall_filter.REFUSED:
        assert decide(program, arch, numbers[name]) == RET_ERRNO | ENOSYS, name
    for name in ("clone", "unshare"):
        assert decide(program, arch, numbers[name], CLONE_NEWUSER | SIGCHLD) == RET_ERRNO | EPERM, name
        assert decide(program, arch, numbers[name], CLONE_NEWNS | SIGCHLD) == RET_ALLOW, name
    for nr in (0, 1, 2, 3, 39, 57, 59, 60, 63, 200, 334):  # read, write, open/close, getpid, fork, execve, ...
        if nr not in numbers.values():
            assert decide(program, arch, nr) == RET_ALLOW, nr
    assert decide(program, 0x40000003, numbers["keyctl"]) == RET_KILL_PROCESS  # i386 code on the same kernel


def test_x32_system_calls_are_refused_and_unknown_machines_get_no_filter():
    program = syscall_filter.program("x86_64")
    assert decide(program, AUDIT_ARCH["x86_64"], 0x40000000 | 250) == RET_ERRNO | ENOSYS
    assert syscall_filter.program("s390x") is None and syscall_filter.keyctl_number("s390x") is None


def test_the_view_holds_stores_not_daemon_folders_and_no_pythonpath(monkeypatch, tmp_path):
    """/nix and /gnu hold the Nix and Guix daemons' sockets: only their stores are bound. sys.path entries from
    PYTHONPATH or the current folder are never bound, with or without site_packages."""
    assert "/nix/store" in fsview.SYSTEM_PATHS and "/gnu/store" in fsview.SYSTEM_PATHS
    assert not {"/nix", "/gnu", "/run", "/var", "/var/run", "/home", "/root"} & set(fsview.SYSTEM_PATHS)
    monkeypatch.setattr(sys, "path", sys.path + [str(tmp_path)])
    monkeypatch.chdir(tmp_path)
    for site_packages in (False, True):
        assert not any(fsview.under(p, str(tmp_path)) for p in fsview.python_paths(site_packages))
    plain = fsview.python_paths(False)
    if sys.prefix != sys.base_prefix:  # a virtual environment is needed only for its packages
        assert not any(fsview.under(p, os.path.realpath(sys.prefix)) for p in plain)
        assert os.path.join(sys.prefix, "pyvenv.cfg") in fsview.python_paths(True)


def test_hidden_home_is_claimed_only_when_no_visible_path_is_in_a_home(monkeypatch):
    monkeypatch.setattr(fsview, "home_folders", lambda: {"/home", "/root", "/srv/me"})
    tree = fsview.View((), ("/usr", "/etc", "/opt/python"), "/opt/python/bin/python3")
    assert fsview.visible_homes(tree) == []
    pyenv = fsview.View((), ("/usr", "/srv/me/.pyenv/versions/3.11"), "/srv/me/.pyenv/versions/3.11/bin/python")
    assert fsview.visible_homes(pyenv) == ["/srv/me/.pyenv/versions/3.11"]
    claimed = protections("bwrap", False, Applied(hidden_home=False))
    assert "hidden_home" not in claimed and "read_only_filesystem" in claimed


def test_each_backend_claims_only_what_it_applies():
    everything = Applied(memory_cgroup=True, syscall_filter=True, private_keyring=True, hidden_home=True)
    assert protections("none", True, everything) == ("resource_limits", "clean_environment", "private_keyring",
                                                     "syscall_filter")
    assert "separate_user" in protections("unshare", True, everything)
    assert "separate_user" not in protections("bwrap", True, everything)
    assert protections("unshare", False, everything) == tuple(p for p in PROTECTIONS if p != "separate_user")
    bare = protections("bwrap", False, Applied())
    assert not {"memory_cgroup", "syscall_filter", "private_keyring", "hidden_home"} & set(bare)


def test_cgroup_discovery_finds_a_delegated_v1_memory_group_and_a_v2_group_with_memory(monkeypatch, tmp_path):
    v1 = tmp_path / "memory" / "machine" / "me"
    v1.mkdir(parents=True)
    v2 = tmp_path / "unified" / "user" / "app"
    v2.mkdir(parents=True)
    (v2 / "cgroup.subtree_control").write_text("cpu memory\n")
    monkeypatch.setattr(cgroup, "_mounts", lambda: [("/", str(tmp_path / "memory"), "cgroup", "rw,memory"),
                                                    ("/", str(tmp_path / "unified"), "cgroup2", "rw")])
    monkeypatch.setattr(cgroup, "_own_groups", lambda: {"memory": "/machine/me", "": "/user/app"})
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cgroup._candidates() == [cgroup.Base(v1, 1), cgroup.Base(v2, 2)]
    (v2 / "cgroup.subtree_control").write_text("cpu\n")  # memory not enabled for its children: not usable
    assert cgroup._candidates() == [cgroup.Base(v1, 1)]
    monkeypatch.setattr(cgroup, "_own_groups", lambda: {"": "/user/app"})
    assert cgroup._candidates() == []


def test_groups_of_dead_supervisors_are_swept_and_live_ones_kept(tmp_path):
    """A supervisor killed with SIGKILL cannot remove its run's group; the next process to look removes it."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, mine, other = (tmp_path / f"infertune-{dead.pid}-ab12", tmp_path / f"infertune-{os.getpid()}-cd34",
                          tmp_path / "unrelated-1-2")
    for path in (stale, mine, other):
        path.mkdir()
    assert cgroup.sweep(cgroup.Base(tmp_path, 1)) == [stale]
    assert not stale.exists() and mine.exists() and other.exists()


def test_an_explicit_cgroup_that_cannot_be_used_is_an_error_that_says_why(tmp_path):
    with pytest.raises(ValueError, match="not a cgroup folder"):
        cgroup._explicit(str(tmp_path))


def test_the_harness_carries_any_source_unchanged():
    source = "s = 'a\\nb' + \"\"\"{x}\"\"\"\nprint(s, '\u00e9')\n"
    program = harness.wrap(source)
    compile(program, "main.py", "exec")
    assert eval(program.rsplit("_infertune_harness(", 1)[1].rsplit(")", 1)[0]) == source
