"""infertune: measure and fine-tune language models for the inference strategy they will be used with."""

__version__ = "0.1.0"
