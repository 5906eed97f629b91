"""Samplers and models: ``load(spec)`` for a model and tokenizer, ``load_sampler(spec)`` for a sampler."""

from infertune.models.base import Completion, Sampler, SamplingParams
from infertune.models.loading import LoadedModel, load, load_sampler

__all__ = ["Completion", "LoadedModel", "Sampler", "SamplingParams", "load", "load_sampler"]
