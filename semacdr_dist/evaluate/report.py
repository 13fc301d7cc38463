"""Evaluation reports: `eval/<model>/metrics.json`, a markdown table, PNG plots, comparisons.

A result (what :func:`semacdr_dist.evaluate.stage.run_evaluate` returns and
writes as ``metrics.json``) is a dict with ``model``, ``settings`` (the
evaluate config, so the report says whether history was excluded and which
candidates were ranked), ``splits``, ``domains`` and ``metrics`` (flat keys such
as ``test/ndcg@10``, ``test/food/ndcg@10``, ``test/cold/ndcg@10``,
``test/sampled/ndcg@10`` and ``.../ci95_lo|hi``).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence
from typing import Any

import pyarrow.fs as pafs

from semacdr_dist.rundir import RunDir

log = logging.getLogger(__name__)

NDCG_PLOT = "ndcg_at_k.png"
COLD_WARM_PLOT = "cold_warm.png"


def _fmt(v: Any) -> str:
    return "–" if v is None or v != v else f"{v:.4f}"


def _ks(result: dict) -> list[int]:
    return sorted(int(k) for k in result["settings"]["ks"])


def _split(result: dict) -> str:
    return "test" if "test" in result["splits"] else result["splits"][-1]


def _k10(ks: Sequence[int]) -> int:
    """The cutoff headline columns use: 10 if evaluated, else the largest one below, else the smallest."""
    below = [k for k in ks if k <= 10]
    return max(below) if below else min(ks)


def settings_line(result: dict) -> str:
    s = result["settings"]
    hist = "history items excluded from the candidates" if s["exclude_history"] else "history items kept among the candidates"
    cand = "the target domain's items" if s["candidates"] == "target_domain" else "the whole corpus"
    return (
        f"Candidates: {cand}; {hist}; index {s['index_type']} over {s['num_shards']} shard(s); "
        f"cold start = at most {s['cold_start_threshold']} target-domain item(s) in the history; "
        f"95% bootstrap intervals from {s['bootstrap_samples']} resamples (seed {s['seed']})."
    )


def markdown_report(result: dict) -> str:
    """One model's report: a table per split and protocol, rows = groups, columns = metric@K."""
    ks = _ks(result)
    m = result["metrics"]
    cols = [f"{name}@{k}" for name in ("hr", "ndcg", "mrr") for k in ks]
    lines = [f"# Evaluation of `{result['model']}`", "", settings_line(result), ""]
    groups = ["", *result["domains"], "cold", "warm"]
    k10 = _k10(ks)
    for split in result["splits"]:
        for proto, title in (("", "full ranking"), ("sampled/", f"{result['settings']['sampled_negatives']} sampled negatives")):
            if f"{split}/{proto}n" not in m and f"{split}/{proto}hr@{ks[0]}" not in m:
                continue
            lines += [f"## {split}: {title}", "", "| group | n | " + " | ".join(cols) + f" | ndcg@{k10} 95% CI |"]
            lines.append("|" + "---|" * (len(cols) + 3))
            for g in groups:
                base = f"{split}/{proto}{g}/" if g else f"{split}/{proto}"
                if f"{base}n" not in m:
                    continue
                ci = (m.get(f"{base}ndcg@{k10}/ci95_lo"), m.get(f"{base}ndcg@{k10}/ci95_hi"))
                ci_s = f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci[0] is not None else "–"
                vals = " | ".join(_fmt(m.get(f"{base}{c}")) for c in cols)
                lines.append(f"| {g or 'all'} | {m[f'{base}n']} | {vals} | {ci_s} |")
            lines.append("")
        extra = {k.split("/", 1)[1]: v for k, v in m.items() if k.startswith(f"{split}/") and ("recall" in k or "target_in_history" in k or "short" in k)}
        if extra:
            lines += [", ".join(f"`{k}` = {v if isinstance(v, int) else _fmt(v)}" for k, v in sorted(extra.items())), ""]
    return "\n".join(lines)


def _figure_bytes(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on cluster nodes
    import matplotlib.pyplot as plt

    return plt


def ndcg_curves_png(series: Sequence[tuple[str, dict]], split: str | None = None, title: str = "NDCG@K") -> bytes:
    """NDCG@K curves, one line per (label, result) (overall group of `split`, default test)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, result in series:
        sp = split or _split(result)
        ks = _ks(result)
        ys = [result["metrics"].get(f"{sp}/ndcg@{k}", float("nan")) for k in ks]
        ax.plot(ks, ys, marker="o", label=label)
        lo = [result["metrics"].get(f"{sp}/ndcg@{k}/ci95_lo") for k in ks]
        hi = [result["metrics"].get(f"{sp}/ndcg@{k}/ci95_hi") for k in ks]
        if None not in lo and None not in hi:
            ax.fill_between(ks, lo, hi, alpha=0.2)
    ax.set_xscale("log")
    all_ks = sorted({k for _, r in series for k in _ks(r)})
    ax.set_xticks(all_ks, [str(k) for k in all_ks])
    ax.minorticks_off()
    ax.set_xlabel("K")
    ax.set_ylabel("NDCG@K")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _figure_bytes(fig)


def cold_warm_png(series: Sequence[tuple[str, dict]], split: str | None = None) -> bytes:
    """Bars of NDCG@10 and HR@10 for cold-start vs warm users, per (label, result), with 95% CIs."""
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(series) + 3), 4))
    bars = []
    for label, result in series:
        sp = split or _split(result)
        k = _k10(_ks(result))
        for metric in ("ndcg", "hr"):
            for g in ("cold", "warm"):
                key = f"{sp}/{g}/{metric}@{k}"
                v = result["metrics"].get(key, float("nan"))
                lo = result["metrics"].get(f"{key}/ci95_lo", v)
                hi = result["metrics"].get(f"{key}/ci95_hi", v)
                bars.append((label, f"{metric}@{k}", g, v, lo, hi))
    names = sorted({(b[0], b[1]) for b in bars}, key=lambda x: ([s[0] for s in series].index(x[0]), x[1]))
    x = np.arange(len(names))
    for j, g in enumerate(("cold", "warm")):
        vals = [next(b for b in bars if (b[0], b[1]) == n and b[2] == g) for n in names]
        v = np.array([b[3] for b in vals], dtype=float)
        err = np.array([[b[3] - b[4] for b in vals], [b[5] - b[3] for b in vals]], dtype=float)
        ax.bar(x + (j - 0.5) * 0.38, v, 0.38, yerr=np.nan_to_num(np.abs(err)), capsize=3, label=g)
    ax.set_xticks(x, [f"{a}\n{b}" for a, b in names], fontsize=8)
    ax.set_ylabel("metric")
    ax.set_title("cold-start vs warm users")
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    return _figure_bytes(fig)


def write_eval_report(run: RunDir, model_name: str, result: dict) -> dict[str, str]:
    """Write ``eval/<model>/`` (metrics.json, report.md, the two plots); returns the paths."""
    base = f"eval/{model_name}"
    paths = {
        "metrics": run.write_json(f"{base}/metrics.json", result),
        "report": run.write_bytes(f"{base}/report.md", markdown_report(result).encode()),
        "ndcg_plot": run.write_bytes(f"{base}/{NDCG_PLOT}", ndcg_curves_png(_domain_series(result))),
        "cold_warm_plot": run.write_bytes(f"{base}/{COLD_WARM_PLOT}", cold_warm_png([(model_name, result)])),
    }
    log.info("evaluation report of %s written to %s", model_name, run.uri_of(base))
    return paths


def _domain_series(result: dict) -> list[tuple[str, dict]]:
    """One model's curves: overall and per target domain (re-keyed as 'overall' results)."""
    sp = _split(result)
    series = [("all", result)]
    for d in result["domains"]:
        prefix = f"{sp}/{d}/"
        metrics = {f"{sp}/{k[len(prefix):]}": v for k, v in result["metrics"].items() if k.startswith(prefix)}
        series.append((d, {**result, "metrics": metrics}))
    return series


def _read_json(uri: str) -> Any:
    fs, path = pafs.FileSystem.from_uri(uri if "://" in uri else _abspath(uri))
    with fs.open_input_stream(path) as f:
        return json.loads(f.read().decode())


def _abspath(p: str) -> str:
    import os

    return os.path.abspath(os.path.expanduser(p))


def _join(uri: str, rel: str) -> str:
    """``uri``/``rel``, keeping a store's query options (s3://b/run?endpoint_override=...) at the end."""
    base, sep, query = uri.partition("?")
    return f"{base.rstrip('/')}/{rel}{sep}{query}"


def _find_metric_files(source: str) -> list[str]:
    """metrics.json files of a source: a file, an eval/<model> dir, or a run dir (every model)."""
    if source.endswith(".json"):
        return [source]
    fs, path = pafs.FileSystem.from_uri(source if "://" in source else _abspath(source))
    if fs.get_file_info(f"{path}/metrics.json").type == pafs.FileType.File:
        return [_join(source, "metrics.json")]
    sel = pafs.FileSelector(f"{path}/eval", allow_not_found=True)
    models = sorted(i.base_name for i in fs.get_file_info(sel) if i.type == pafs.FileType.Directory)
    files = [_join(source, f"eval/{m}/metrics.json") for m in models if fs.get_file_info(f"{path}/eval/{m}/metrics.json").type == pafs.FileType.File]
    if not files:
        raise FileNotFoundError(f"{source}: no metrics.json (expected a metrics file, eval/<model>/ or a run dir with eval/*/metrics.json)")
    return files


def compare(sources: Sequence[str], out_dir: str, split: str | None = None) -> dict:
    """Put several runs/models side by side: compare.md, compare.json and the two plots in ``out_dir``.

    ``sources``: run directories (every ``eval/<model>/``), ``eval/<model>`` directories or
    ``metrics.json`` files. Labels are the model names, prefixed by the run when several runs mix.
    """
    loaded: list[tuple[str, str, dict]] = []
    for src in sources:
        for f in _find_metric_files(str(src)):
            loaded.append((str(src), f, _read_json(f)))
    if not loaded:
        raise ValueError("compare: no sources given")
    multi_run = len({s for s, _, _ in loaded}) > 1
    series = []
    for src, _, res in loaded:
        label = f"{src.rstrip('/').rsplit('/', 1)[-1]}:{res['model']}" if multi_run else res["model"]
        series.append((label, res))
    ks = sorted(set.intersection(*[set(_ks(r)) for _, r in series]))
    sp = split or _split(series[0][1])
    cols = [f"{name}@{k}" for name in ("hr", "ndcg", "mrr") for k in ks]
    groups = ["", "cold", "warm"]
    lines = [f"# Comparison ({sp} split)", ""]
    for proto, title in (("", "full ranking"), ("sampled/", "sampled negatives")):
        for g in groups:
            rows = []
            for label, res in series:
                base = "/".join(x for x in (sp, proto.rstrip("/"), g) if x) + "/"
                if f"{base}n" in res["metrics"]:
                    rows.append(f"| {label} | {res['metrics'][f'{base}n']} | " + " | ".join(_fmt(res["metrics"].get(base + c)) for c in cols) + " |")
            if rows:
                lines += [f"## {title}: {g or 'all users'}", "", "| model | n | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2), *rows, ""]
    lines += ["## settings", ""] + [f"- {label}: {settings_line(res)}" for label, res in series] + [""]
    out = RunDir(out_dir)
    table = {label: {k: v for k, v in res["metrics"].items() if k.startswith(f"{sp}/")} for label, res in series}
    paths = {
        "json": out.write_json("compare.json", {"split": sp, "sources": [f for _, f, _ in loaded], "metrics": table}),
        "markdown": out.write_bytes("compare.md", "\n".join(lines).encode()),
        "ndcg_plot": out.write_bytes(NDCG_PLOT, ndcg_curves_png(series, sp, title=f"NDCG@K ({sp})")),
        "cold_warm_plot": out.write_bytes(COLD_WARM_PLOT, cold_warm_png(series, sp)),
    }
    return {"labels": [lbl for lbl, _ in series], "paths": paths}
