"""The main job (``infertune demo``): fine-tuning for Best-of-N against the base model and RL, end to end on a
laptop CPU, through the product's own path (store, evaluation core, report)."""

from infertune.demo.pipeline import DemoConfig, run_demo

__all__ = ["DemoConfig", "run_demo"]
