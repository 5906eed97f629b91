"""A tiny from-scratch Llama with a character-level tokenizer, built by the project itself.

It needs nothing from a model hub, trains in seconds to minutes on a laptop CPU, and is a real transformers
``LlamaForCausalLM``, so every code path (sampling, KV cache, training, saving) is the one a large model takes. Character
tokens suit the arithmetic task: every digit and operator is its own token.
"""

from __future__ import annotations

import string
from dataclasses import asdict, dataclass

SPECIALS = ["<pad>", "<eos>", "<unk>"]


@dataclass
class TinyConfig:
    """Shape of the tiny model (defaults: about 0.6M parameters)."""

    hidden_size: int = 128
    layers: int = 3
    heads: int = 4
    intermediate_size: int = 384
    max_positions: int = 1024
    seed: int = 0


def char_tokenizer():
    """Character-level tokenizer over printable ASCII plus newline and tab, with <pad>, <eos> and <unk>."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [c for c in string.printable if c not in "\r\x0b\x0c"]
    vocab = {tok: i for i, tok in enumerate(SPECIALS + chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>",
                                   clean_up_tokenization_spaces=False)


def build_tiny(model_class, config: TinyConfig, tokenizer, **extra):
    """A randomly initialised tiny Llama of any head (causal LM, classifier), deterministic in ``config.seed``
    and leaving the global random state as it was."""
    import torch
    from transformers import LlamaConfig

    llama = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.layers, num_attention_heads=config.heads, num_key_value_heads=config.heads,
        max_position_embeddings=config.max_positions, pad_token_id=tokenizer.pad_token_id, **extra,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(config.seed)
    try:
        return model_class(llama)
    finally:
        torch.random.set_rng_state(generator_state)


def tiny_model(config: TinyConfig | None = None, tokenizer=None):
    """A randomly initialised tiny Llama causal LM (deterministic in the seed) and its tokenizer."""
    from transformers import LlamaForCausalLM

    config = config or TinyConfig()
    tokenizer = tokenizer or char_tokenizer()
    model = build_tiny(LlamaForCausalLM, config, tokenizer, tie_word_embeddings=True,
                       eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    model.config.infertune_tiny = asdict(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model.eval(), tokenizer
