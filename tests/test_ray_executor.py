"""--executor ray on a local 2-CPU Ray cluster: the same store content as the local executor, resumable, and no row
lost or duplicated when a sampler worker is killed mid-run."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray executor is tested where infertune[ray] is installed (CI does)")

from infertune.sampling import SampleConfig, sample_run  # noqa: E402
from infertune.store import SampleStore  # noqa: E402

# Columns that name the run or the moment, not the sample.
RUN_COLUMNS = ["run_id", "created_at", "latency_s"]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _config(out, **kw) -> SampleConfig:
    base = dict(task="arith", task_option=["size=40", "seed=5"], model="tiny", n=3, temperatures=[1.0, 0.7],
                max_new_tokens=12, batch_prompts=2, limit=10, out=str(out), seed=3)
    base.update(kw)
    return SampleConfig(**base)


def _rows(path):
    table = SampleStore(path).read().drop_columns(RUN_COLUMNS)
    return table.sort_by([("prompt_id", "ascending"), ("temperature", "ascending"), ("sample_index", "ascending")])


def assert_same_samples(local, distributed):
    """Every column equal, except that log-probs may differ in the last float digits: a Ray worker runs torch with
    one thread per CPU it holds, and a different thread count sums in a different order."""
    assert local.num_rows == distributed.num_rows
    for name in local.column_names:
        if name == "logprob_sum":
            np.testing.assert_allclose(distributed.column(name).to_numpy(), local.column(name).to_numpy(),
                                       rtol=1e-6)
        else:
            assert local.column(name).equals(distributed.column(name)), name


def _worker_pids() -> set[int]:
    import psutil

    pids = set()
    for proc in psutil.process_iter(["cmdline"]):
        if any("SamplingWorker" in part for part in proc.info["cmdline"] or []):
            pids.add(proc.pid)
    return pids


def test_ray_executor_gives_the_local_store_and_resumes(tmp_path, cluster):
    sample_run(_config(tmp_path / "local"))
    partial = sample_run(_config(tmp_path / "ray", executor="ray", ray_workers=2, limit=4))
    assert partial["rows_written"] == 4 * 3 * 2
    resumed = sample_run(_config(tmp_path / "ray", executor="ray", ray_workers=2))
    assert resumed["rows_written"] == 6 * 3 * 2  # only what was missing
    local, distributed = _rows(tmp_path / "local"), _rows(tmp_path / "ray")
    assert local.num_rows == 10 * 3 * 2
    assert_same_samples(local, distributed)


def test_killing_a_sampler_worker_loses_and_duplicates_nothing(tmp_path, cluster):
    from infertune.progress import NullProgress

    killed = []

    class KillOne(NullProgress):
        """Kills a sampler worker when the first batch is done (progress is reported per finished batch)."""

        def stage(self, name, total=None, unit=""):
            stage = super().stage(name, total, unit)

            def advance(amount=1, info=""):
                if not killed:
                    pids = sorted(_worker_pids())
                    assert len(pids) == 2, f"expected 2 sampler workers, found {pids}"
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])

            stage.advance = advance
            return stage

    kill_one = KillOne()

    sample_run(_config(tmp_path / "local", limit=16))
    summary = sample_run(_config(tmp_path / "ray", executor="ray", ray_workers=2, limit=16), progress=kill_one)
    assert killed, "no worker was killed: the test checked nothing"
    assert summary["rows_written"] == 16 * 3 * 2
    local, distributed = _rows(tmp_path / "local"), _rows(tmp_path / "ray")
    keys = list(zip(*(distributed.column(c).to_pylist() for c in ("prompt_id", "temperature", "sample_index"))))
    assert len(keys) == len(set(keys)) == 16 * 3 * 2
    assert_same_samples(local, distributed)


def test_ray_rewards_equal_local_rewards_for_sandboxed_code(cluster):
    from infertune.executors.ray_cluster import ray_rewards
    from infertune.tasks import load

    task = load("humaneval")
    problems = task.problems()[:6] * 2
    completions = [p.reference for p in problems[:6]] + ["    return None\n"] * 6
    local = task.rewards(problems, completions, workers=2)
    distributed = ray_rewards(task, problems, completions, chunk=4)
    assert distributed == local
    assert np.sum(local) == 6
