"""The main job (``infertune demo``): does fine-tuning for Best-of-N beat the base model and RL at Best-of-N? End to
end on a laptop CPU, through the product's own path (sample store, evaluation core, report): settings (``settings``),
stages (``run``), figures and findings (``summary``), console view (``views``)."""

from infertune.demo.run import DemoConfig, run_demo

__all__ = ["DemoConfig", "run_demo"]
