"""The seccomp filter every sandboxed program runs under: a few system calls that reach past the sandbox's limits.

Namespaces and rlimits leave these open, and each one was shown to matter:

- the kernel keyring (``add_key``, ``keyctl``, ``request_key``): keys are shared with the caller's session and user,
  outlive the run, and ``request_key`` can make the kernel start ``/sbin/request-key`` as root on the host (for
  example a DNS lookup for the ``dns_resolver`` key type, outside the run's network namespace);
- System V IPC (``shmget`` and friends) and ``memfd_create``/``memfd_secret``: memory that the address-space limit
  does not count (2 GB of shared memory were held under a 256 MB limit);
- new user namespaces (``unshare``/``clone`` with CLONE_NEWUSER; ``clone3``, whose flags a filter cannot read, answers
  ENOSYS so that the C library falls back to ``clone``): inside one, a program could mount a tmpfs of any size.

They answer ENOSYS, as on a kernel built without them (CLONE_NEWUSER: EPERM, as where user namespaces are disabled),
so libraries fall back instead of crashing. Programs of another architecture (i386 code on x86_64, x32) are killed.

The filter is built here, once, as classic BPF bytes that the launcher installs with prctl right before it starts
the program. Only x86_64 and aarch64 are known; elsewhere ``program()`` is None and no run claims the protection.
"""

from __future__ import annotations

import functools
import os
import struct

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000
NUMBERS = {
    "x86_64": {"add_key": 248, "request_key": 249, "keyctl": 250, "shmget": 29, "shmat": 30, "shmctl": 31,
               "shmdt": 67, "semget": 64, "semop": 65, "semctl": 66, "semtimedop": 220, "msgget": 68, "msgsnd": 69,
               "msgrcv": 70, "msgctl": 71, "memfd_create": 319, "memfd_secret": 447, "clone3": 435,
               "clone": 56, "unshare": 272},
    "aarch64": {"add_key": 217, "request_key": 218, "keyctl": 219, "shmget": 194, "shmat": 196, "shmctl": 195,
                "shmdt": 197, "semget": 190, "semop": 193, "semctl": 191, "semtimedop": 192, "msgget": 186,
                "msgsnd": 189, "msgrcv": 188, "msgctl": 187, "memfd_create": 279, "memfd_secret": 447,
                "clone3": 435, "clone": 220, "unshare": 97},
}
REFUSED = ("add_key", "request_key", "keyctl", "shmget", "shmat", "shmctl", "shmdt", "semget", "semop", "semctl",
           "semtimedop", "msgget", "msgsnd", "msgrcv", "msgctl", "memfd_create", "memfd_secret", "clone3")
FLAG_CHECKED = ("clone", "unshare")  # refused only with CLONE_NEWUSER in their first argument
CLONE_NEWUSER = 0x10000000
ENOSYS, EPERM = 38, 1

# seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6]. Both known architectures are little-endian,
# so the low half of args[0] (which holds every clone flag) is at offset 16.
OFFSET_NR, OFFSET_ARCH, OFFSET_ARG0_LOW = 0, 4, 16
LD_W_ABS, JEQ_K, JGE_K, JSET_K, RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
RET_ALLOW, RET_KILL_PROCESS, RET_ERRNO = 0x7FFF0000, 0x80000000, 0x00050000


def _assemble(lines: list[tuple]) -> bytes:
    """Classic BPF from (label,), (op, k) and (op, k, true_label, false_label) rows; jumps go forward only."""
    labels, index = {}, 0
    for row in lines:
        if len(row) == 1:
            labels[row[0]] = index
        else:
            index += 1
    out, index = [], 0
    for row in lines:
        if len(row) == 1:
            continue
        op, k, *targets = row
        jt, jf = (labels[t] - index - 1 if t else 0 for t in targets) if targets else (0, 0)
        if not (0 <= jt < 256 and 0 <= jf < 256):
            raise ValueError("a BPF jump does not fit in a byte")
        out.append(struct.pack("=HBBI", op, jt, jf, k))
        index += 1
    return b"".join(out)


@functools.lru_cache(maxsize=None)
def program(machine: str | None = None) -> bytes | None:
    """The filter for ``machine`` (this machine's by default) as bytes of struct sock_filter, or None if unknown."""
    machine = machine or os.uname().machine
    if machine not in NUMBERS:
        return None
    numbers = NUMBERS[machine]
    rows: list[tuple] = [(LD_W_ABS, OFFSET_ARCH), (JEQ_K, AUDIT_ARCH[machine], None, "kill"),
                         (LD_W_ABS, OFFSET_NR)]
    if machine == "x86_64":
        rows.append((JGE_K, X32_SYSCALL_BIT, "nosys", None))
    rows += [(JEQ_K, numbers[name], "nosys", None) for name in REFUSED]
    rows += [(JEQ_K, numbers[name], "flags", None) for name in FLAG_CHECKED]
    rows += [(RET_K, RET_ALLOW),
             ("flags",), (LD_W_ABS, OFFSET_ARG0_LOW), (JSET_K, CLONE_NEWUSER, "eperm", None), (RET_K, RET_ALLOW),
             ("nosys",), (RET_K, RET_ERRNO | ENOSYS),
             ("eperm",), (RET_K, RET_ERRNO | EPERM),
             ("kill",), (RET_K, RET_KILL_PROCESS)]
    return _assemble(rows)


def keyctl_number(machine: str | None = None) -> int | None:
    """keyctl's system call number, for the launcher's join of a fresh session keyring; None where unknown."""
    return NUMBERS.get(machine or os.uname().machine, {}).get("keyctl")
