"""Load and save models and tokenizers: a local HF folder, a PEFT adapter folder, or a hub id.

The same functions serve the toy reference (a folder the pipeline wrote) and real models
(`models.<name>.path` in the config). A path that does not load fails with a
ModelPathError naming the path and what to check, before any training starts.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from safedrift import cpu_pin
from safedrift.model_paths import MODEL_FILES, model_path_problem
from safedrift.errors import ModelPathError

ADAPTER_CONFIG = "adapter_config.json"


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def use_bf16(setting="auto") -> bool:
    """bf16 where asked for, or (auto) on a CUDA device that supports it. On CPU fp32 keeps runs bit-identical."""
    if setting == "auto":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(setting)


DTYPES = ("float32", "bfloat16", "float16", "auto")  # models.<name>.dtype


def torch_dtype(name: str | None):
    return {None: None, "auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16,
            "float16": torch.float16}[name]


def add_load_args(parser) -> None:
    """--dtype and --trust-remote-code: how a stage loads `models.<name>` (every rule that loads
    the model passes both, from the model's config)."""
    parser.add_argument("--dtype", default="float32", choices=DTYPES, help="models.<name>.dtype")
    parser.add_argument("--trust-remote-code", action="store_true", help="models.<name>.trust_remote_code")


def load_args(args) -> dict:
    """The load_model keyword arguments of add_load_args' flags."""
    return {"dtype": args.dtype, "trust_remote_code": args.trust_remote_code}


def set_threads(threads: int | None) -> None:
    """torch's thread count: `threads`, capped where the CPU pins need it (cpu_pin.thread_cap)."""
    cap = cpu_pin.thread_cap(os.environ)
    if cap:
        threads = min(int(threads or cap), cap)
    if threads:
        torch.set_num_threads(int(threads))


def is_adapter(path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def check_model_path(path: str, key: str | None = None, files=MODEL_FILES) -> None:
    """Fail fast with one line naming the path and its config key (`key`, e.g. models.qwen.path) if
    `path` is neither a folder with one of `files` nor a plausible hub id. Without a key, a path under
    results/ is a pipeline output, any other came from models.<name>.path or judges.<name>.model."""
    built = not key and (Path(path).parts[:1] == ("results",) or "/results/" in path)
    problem = model_path_problem(path, files=files, fix="it is a pipeline output: run snakemake to build it" if built
                                 else "fix the path or download the model")
    if problem:
        where = key or f"model path {path}" + ("" if built else " (models.<name>.path or judges.<name>.model)")
        raise ModelPathError(f"{where}: {problem}")


def load_tokenizer(path: str, padding_side: str = "right", key: str | None = None, trust_remote_code: bool = False,
                   chat_template: bool = True):
    """`key`: the config key `path` came from, named in errors (None: a pipeline-built folder).
    chat_template=False: a classifier prompted in its own raw format (HarmBench's [INST] prompt), whose
    tokenizer may ship without a chat template."""
    from transformers import AutoTokenizer

    check_model_path(path, key, files=(*MODEL_FILES, "tokenizer_config.json"))
    source = base_model_path(path) if is_adapter(path) and not (Path(path) / "tokenizer_config.json").exists() else path
    try:
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise ModelPathError(f"{key + ': ' if key else ''}tokenizer at {source} could not be loaded "
                             f"({str(e).splitlines()[0]})") from None
    if tok.pad_token is None:
        # Real instruct models often ship without a pad token; the EOS token is the usual stand-in.
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    if chat_template and tok.chat_template is None:
        raise ModelPathError(f"tokenizer at {source} has no chat template; use an instruct/chat model")
    return tok


def base_model_path(adapter_path) -> str:
    return json.loads((Path(adapter_path) / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]


def load_model(path: str, dtype: str | None = "float32", trust_remote_code: bool = False, merge: bool = False,
               train: bool = False, key: str | None = None):
    """A causal LM from a folder, a hub id, or a PEFT adapter folder (its base is loaded first).

    merge=True folds a LoRA adapter into the base weights (faster generation). `key`: the config key
    `path` came from, named in errors."""
    from transformers import AutoModelForCausalLM

    check_model_path(path, key)
    kwargs = {"trust_remote_code": trust_remote_code}
    if torch_dtype(dtype) is not None:
        kwargs["dtype"] = torch_dtype(dtype)
    try:
        if is_adapter(path):
            from peft import PeftModel

            base = AutoModelForCausalLM.from_pretrained(base_model_path(path), **kwargs)
            model = PeftModel.from_pretrained(base, path, is_trainable=train)
            if merge:
                model = model.merge_and_unload()
        else:
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelPathError(f"{key + ': ' if key else ''}model at {path} could not be loaded "
                             f"({str(e).splitlines()[0]})") from None
    model.to(device())
    model.train(train)
    return model


def wrap_lora(model, lora: dict):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=lora.get("r", 8), lora_alpha=lora.get("alpha", 16), lora_dropout=lora.get("dropout", 0.0),
                        target_modules=lora.get("target_modules", ["q_proj", "k_proj", "v_proj", "o_proj"]),
                        use_rslora=bool(lora.get("rslora", False)), task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def save_atomic(model, tokenizer, out_dir) -> None:
    """Save a model (or adapter) and tokenizer into `out_dir`: written to a temporary sibling
    folder first, then each file is renamed into place (other files in `out_dir` are kept)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def residual_layers(model):
    """The decoder blocks of a (possibly PEFT-wrapped) causal LM, for hooks on the residual stream."""
    m = model
    for attr in ("base_model", "model"):
        while hasattr(m, attr) and not hasattr(m, "layers"):
            m = getattr(m, attr)
    if not hasattr(m, "layers"):
        raise ModelPathError(f"cannot find the decoder layers of {type(model).__name__} for residual-stream hooks")
    return m.layers
