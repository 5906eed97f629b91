"""``infertune doctor``: which protections the sandbox gives model-written code on this machine, a hostile self-test,
and what to install or change. The work is here; the command line only prints ``Diagnosis.lines()``."""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from infertune.tasks.grading import cgroup, sandbox
from infertune.tasks.grading.fsview import view, visible_homes
from infertune.tasks.grading.hostile import SuiteReport, run_suite
from infertune.tasks.grading.isolation import (HOW_TO_OPT_IN, PROTECTIONS, SandboxUnavailable, how_to_isolate,
                                               kernel_obstacles)
from infertune.tasks.grading.sandbox import SandboxConfig


@dataclass(frozen=True)
class Diagnosis:
    uid: int
    user: str
    backends: dict[str, str | None]  # each backend tried here -> None when it works, else why not
    backend: str | None  # what runs use now; None when they are refused (no isolation, no opt-in)
    protections: tuple[str, ...]
    suite: SuiteReport | None
    advice: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Isolation works and, when the self-test ran, every hostile case was contained."""
        return self.backend in ("bwrap", "unshare") and (self.suite is None or self.suite.held)

    def lines(self) -> list[str]:
        who = "root" if self.uid == 0 else "an ordinary user"
        out = [f"infertune sandbox doctor: running as {self.user} (uid {self.uid}, {who})", "", "backends:"]
        for name, why in self.backends.items():
            out.append(f"  {name:<8} {'works' if why is None else 'not usable: ' + why}")
        out.append(f"model-written code runs through: {self.backend or 'nothing (refused: no isolation)'}")
        out += ["", "protections:" if self.backend else "protections (only after an opt-in to unisolated runs):"]
        for name, meaning in PROTECTIONS.items():
            out.append(f"  [{'x' if name in self.protections else ' '}] {name:<21} {meaning}")
        out.append("")
        if self.suite is None:
            out.append("hostile self-test: not run" + ("" if self.backend in ("bwrap", "unshare") else
                                                      " (it needs isolation: its programs would do real harm)"))
        else:
            s = self.suite
            verdict = "every case held" if s.held else "SOME CASES WERE NOT CONTAINED"
            out.append(f"hostile self-test: {sum(o.held for o in s.outcomes)}/{len(s.outcomes)} held through "
                       f"{s.backend} in {s.seconds:.1f} s: {verdict}")
            for o in s.outcomes:
                mark = "held " if o.held else "FAIL "
                out.append(f"  {mark} {o.case:<20} {o.attack} ({o.status}, {o.seconds:.2f} s)")
                out.extend(f"        {problem}" for problem in o.problems)
        if self.advice:
            out += ["", "what to do:"]
            out.extend(f"  - {line}" for line in self.advice)
        return out


MEMORY_CGROUP_ADVICE = (
    "optional: give each run a memory cgroup, the only cap on all of its memory together; without one, a run can "
    "hold up to max_processes x memory_mb (16 GB with the defaults) plus its tmpfs mounts. As root with a writable "
    f"/sys/fs/cgroup it is automatic; otherwise set {cgroup.ENV_CGROUP} to a cgroup folder delegated to you (v2: "
    "with the memory controller and no process of its own; v1: in the memory hierarchy); the README shows how with "
    "systemd")


def _advice(backends: dict[str, str | None], backend: str | None, suite: SuiteReport | None, root: bool,
            granted: tuple[str, ...], homes: list[str]) -> list[str]:
    advice = []
    if backend not in ("bwrap", "unshare"):
        advice += kernel_obstacles() + [how_to_isolate(root, sandbox._bwrap_path() is not None), HOW_TO_OPT_IN]
    else:
        if not root and backends.get("bwrap") is not None:
            advice.append("optional: install bubblewrap (sudo apt-get install bubblewrap, or your distribution's "
                          "package) to build the same sandbox with Flatpak's widely used tool; the launcher's own "
                          "construction in use now gives the same protections")
        if "memory_cgroup" not in granted:
            advice.append(MEMORY_CGROUP_ADVICE)
        if homes:
            advice.append(f"the Python installation lives in a home folder, so programs can read it: {', '.join(homes)}"
                          "; an interpreter installed outside home folders (/usr, /opt) keeps them hidden")
    if suite is not None and not suite.held:
        advice.append("do not run model-written code on this machine until the failures above are understood; "
                      "please report them with this output")
    return advice


def diagnose(self_test: bool = True, config: SandboxConfig | None = None, repo: Path | None = None) -> Diagnosis:
    """Probe every backend, say which one runs use and what it protects, and run the hostile suite through it."""
    cfg = config or SandboxConfig()
    root = os.geteuid() == 0
    names = ("unshare", "bwrap") if root else ("bwrap", "unshare")
    backends = {name: sandbox.probe(name) for name in names}
    try:
        backend: str | None = sandbox.choose_backend(cfg)
    except SandboxUnavailable:
        backend = None
    suite = run_suite(cfg, repo=repo) if self_test and backend in ("bwrap", "unshare") else None
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = str(os.getuid())
    granted = tuple(name for name, on in sandbox.capabilities(cfg).items() if on)
    homes = visible_homes(view(cfg.site_packages)) if backend else []
    return Diagnosis(os.getuid(), user, backends, backend, granted, suite,
                     tuple(_advice(backends, backend, suite, root, granted, homes)))
