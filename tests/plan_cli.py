"""Applying a hand-written plan to ten arith prompts with the tiny model through `infertune eval --plan`."""

from __future__ import annotations

import json
from pathlib import Path


def eval_plan(folder: Path, raw: dict) -> tuple[dict, Path]:
    """Write ``raw`` as folder/plan.json, apply it with the tiny model scoring by ``confidence``, and return the
    per-prompt results (results.jsonl by prompt id) and the run folder."""
    from typer.testing import CliRunner

    from infertune.cli import app

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "plan.json"
    path.write_text(json.dumps(raw))
    out = folder / "run"
    args = ["eval", "--task", "arith", "--task-option", "size=30", "--model", "tiny", "--limit", "10",
            "--max-new-tokens", "8", "--out", str(out), "--plan", str(path), "--verifier", "confidence=tiny"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    return {r["prompt_id"]: r for r in map(json.loads, (out / "applied-plan" / "results.jsonl").open())}, out
