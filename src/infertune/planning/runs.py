"""Search and revision strategies run on a set of prompts, written to sample stores like any other sampling run.

Each search strategy gets a store of its own (``RUN/strategies/<name>``): one row per (prompt, run) with the chosen
answer, its aggregated PRM score and ``num_tokens`` = every token the run generated (steps, dropped candidates,
rollouts). Each revision family (temperature, window) gets one store holding C_max chains of L_max attempts per prompt
(row index = chain · L_max + attempt, ``prompt`` = the context the attempt was sampled from, ``num_tokens`` = its
generated tokens plus the earlier attempts it re-read). Rewards and verifier scores are added by ``scoring`` as for
any run. A store's meta records the strategy; work already stored is skipped, so an interrupted run resumes, and
because every draw depends only on (seed, text, index) the resumed run is the one that would have been drawn.

Seeds are derived from the run's seed and the store's name, so no strategy draws the same random numbers as the
parallel pool, whose first m samples are the probes that decide a prompt's bin: a strategy's value is independent
of the samples that chose it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from infertune.models.revise import RevisionConfig, revision_chains
from infertune.models.search import HFStepSampler, SearchConfig, search
from infertune.planning.strategies import ChainLayout, Strategy
from infertune.store import Sample, SampleStore, StoreError
from infertune.tasks import Problem, Task
from infertune.tasks.steps import step_format

STRATEGY_DIR = "strategies"
PRM_AGGREGATES = {"prm": "last", "prm-min": "min", "prm-prod": "prod"}  # verifier names of a PRM's aggregates


@dataclass
class Policy:
    """A loaded model as the runs use it: a sampler with token ids, and how it reads a problem."""

    sampler: object
    render: Callable[[Problem], str]
    name: str


def open_policy(spec: str, *, chat: bool = False, max_rows: int = 512) -> Policy:
    """A local model (tiny, smollm2 or a directory) with its chat template applied when ``chat``."""
    from infertune.models.loading import load_sampler

    sampler, loaded = load_sampler(spec, backend="hf", max_rows=max_rows)
    if chat and loaded is not None and loaded.has_chat_template:
        sampler.add_special_tokens = False
        tokenizer = loaded.tokenizer
        return Policy(sampler, lambda p: tokenizer.apply_chat_template(p.chat(), tokenize=False,
                                                                       add_generation_prompt=True), spec)
    return Policy(sampler, lambda p: p.prompt, spec)


def strategy_seed(seed: int, name: str) -> int:
    """A seed of its own for each strategy store, stable across processes."""
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def store_name(strategy: Strategy, window: int | None = None, identity: dict | None = None) -> str:
    """Folder name of a strategy's store: a search strategy's own, a revision family's shared one; ``identity``
    (the models it runs with) adds a short fingerprint, so runs with another PRM or reviser never mix."""
    if strategy.method == "revise":
        raw = f"revise-T{strategy.temperature:g}-w{window}"
    else:
        raw = (f"{strategy.method}-k{strategy.lookahead}-M{strategy.width}-{strategy.rule}-N{strategy.n}"
               f"-T{strategy.temperature:g}")
    if identity:
        raw += "-" + hashlib.blake2b(json.dumps(identity, sort_keys=True).encode(), digest_size=3).hexdigest()
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw)


def _claim(store: SampleStore, identity: dict) -> None:
    """A store holds runs of one configuration: resuming with other models or settings is an error."""
    recorded = store.meta().get("identity")
    if recorded is not None and recorded != identity:
        raise StoreError(f"{store.path}: these runs were made with {recorded}, not {identity}; remove the folder "
                         "or use another run")


def run_search(store: SampleStore, task: Task, problems: Sequence[Problem], policy: Policy, prm,
               strategy: Strategy, *, runs: int, seed: int, max_steps: int = 16, max_step_tokens: int = 32,
               final=None, identity: dict | None = None, batch: int = 64,
               log: Callable[[str], None] = lambda message: None) -> dict:
    """Runs 0 .. runs − 1 of a search strategy on every problem that lacks them. The strategy's rule names the
    verifier of the final choice: the PRM, or ``final`` (a verifier of that name)."""
    if strategy.method not in ("beam", "lookahead"):
        raise ValueError(f"{strategy.label()} is not a search strategy")
    chooser = strategy.rule.split(":", 1)[1]
    if final is None and chooser in PRM_AGGREGATES:
        final = prm.with_aggregate(PRM_AGGREGATES[chooser])
    if final is None or final.name != chooser:
        raise ValueError(f"{strategy.label()}: its answers are chosen by {chooser!r}, which is neither the PRM "
                         f"({prm.name}) nor the verifier given")
    config = SearchConfig(n=strategy.n, width=strategy.width, lookahead=strategy.lookahead,
                          temperature=strategy.temperature, max_steps=max_steps, max_step_tokens=max_step_tokens,
                          select="weighted" if strategy.rule.startswith("wmaj") else "best",
                          seed=strategy_seed(seed, store_name(strategy)))
    identity = {**(identity or {}), "policy": policy.name, "final": final.name, "seed": config.seed,
                "max_steps": max_steps, "max_step_tokens": max_step_tokens}
    _claim(store, identity)
    store.init(task_spec=task.spec(), model=policy.name, strategy=asdict(strategy), search=asdict(config),
               prm={"view": prm.view, "steps": prm.steps, "aggregate": prm.aggregate}, identity=identity,
               kind="search")
    sampler = HFStepSampler(policy.sampler, step_format(task.step_format))
    done = store.keys()
    written = tokens = 0
    with store.writer(flush_rows=10**9, flush_seconds=float("inf")) as writer:
        for r in range(runs):
            todo = [p for p in problems if (task.name, p.id, float(strategy.temperature), r) not in done]
            for start in range(0, len(todo), batch):
                chunk = todo[start : start + batch]
                results = search(chunk, [policy.render(p) for p in chunk], sampler, prm, config, run=r,
                                 answer=task.extract, final=final)
                for p, res in zip(chunk, results):
                    written += writer.write(Sample(task=task.name, prompt_id=p.id, sample_index=r,
                                                   temperature=float(strategy.temperature), prompt=policy.render(p),
                                                   completion=res.text, seed=config.seed, num_tokens=res.tokens,
                                                   scores={final.name: res.score}))
                    tokens += res.tokens
                writer.flush()
                log(f"{strategy.label()}: run {r}, {start + len(chunk)}/{len(todo)} prompts")
    return {"rows_written": written, "tokens": tokens}


def revision_context(task, render, problem: Problem, attempts: list[str]) -> str:
    """What the revision model reads: the question and earlier attempts, rendered from a problem that carries no
    reference answer and no metadata, so no renderer can show either."""
    shown = Problem(problem.id, task.revision_prompt(problem, attempts), None, problem.target, system=problem.system)
    return render(shown)


def run_revisions(store: SampleStore, task: Task, problems: Sequence[Problem], policy: Policy, reviser: Policy,
                  layout: ChainLayout, *, seed: int, max_new_tokens: int = 32, identity: dict | None = None,
                  batch: int = 64, log: Callable[[str], None] = lambda message: None) -> dict:
    """C_max chains of L_max attempts for every problem that lacks them."""
    name = f"revise-T{layout.temperature:g}-w{layout.window}"
    config = RevisionConfig(chains=layout.chains, length=layout.attempts, window=layout.window,
                            temperature=layout.temperature, max_new_tokens=max_new_tokens,
                            seed=strategy_seed(seed, name))
    identity = {**(identity or {}), "policy": policy.name, "reviser": reviser.name, "seed": config.seed,
                "chains": layout.chains, "attempts": layout.attempts, "max_new_tokens": max_new_tokens}
    _claim(store, identity)
    store.init(task_spec=task.spec(), model=policy.name, reviser=reviser.name, revisions=asdict(config),
               identity=identity, kind="revise")
    per_prompt = layout.chains * layout.attempts
    have: dict[str, int] = {}
    for task_name, pid, temperature, _ in store.keys():
        if task_name == task.name and temperature == float(layout.temperature):
            have[pid] = have.get(pid, 0) + 1
    todo = [p for p in problems if have.get(p.id, 0) < per_prompt]

    def render_revision(problem: Problem, attempts: list[str]) -> str:
        return revision_context(task, reviser.render, problem, attempts)

    def count(text: str) -> int:
        return len(reviser.sampler.encode([text])[0])

    written = tokens = 0
    with store.writer(flush_rows=10**9, flush_seconds=float("inf")) as writer:
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            chains = revision_chains(chunk, policy.sampler, reviser.sampler, config, render=policy.render,
                                     render_revision=render_revision, count_tokens=count)
            for p, row in zip(chunk, chains):
                for c, chain in enumerate(row):
                    for i, a in enumerate(chain):
                        written += writer.write(Sample(task=task.name, prompt_id=p.id,
                                                       sample_index=c * layout.attempts + i,
                                                       temperature=float(layout.temperature), prompt=a.context,
                                                       completion=a.text, seed=config.seed, num_tokens=a.charged,
                                                       status="ok" if a.finished else "length"))
                        tokens += a.charged
            writer.flush()
            log(f"revisions T={layout.temperature:g}: {start + len(chunk)}/{len(todo)} prompts")
    return {"rows_written": written, "tokens": tokens}


def strategy_dir(run: Path) -> Path:
    return Path(run) / STRATEGY_DIR
