"""View generation for a batch of items, the Ray actors that run it, and a resilient pool.

:func:`generate_views` is a plain function (generator + encoder in, VIEWS rows
out): render both prompts, generate, validate, score faithfulness, resample
the failures, fall back after ``max_retries``. `ViewWorker` holds one engine and
one faithfulness encoder in a Ray actor; `EncodeWorker` one encoder.
`ActorPool` keeps ``max_in_flight`` calls queued per actor, replaces an actor
that died and resubmits its batch, and bisects a batch that keeps killing
actors down to the item that does (which then gets fallback rows).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from semacdr_dist.semantics.config import EncoderConfig, LLMConfig
from semacdr_dist.semantics.engines import (
    Encoder,
    Generation,
    Generator,
    make_encoder,
    make_generator,
)
from semacdr_dist.semantics.prompts import content_text, instruction_words, render_messages
from semacdr_dist.semantics.validate import check_view, clean, echo_ngrams, fallback_text

log = logging.getLogger(__name__)


def _safe_generate(gen: Generator, convs: list[list[dict[str, str]]]) -> list[Generation | None]:
    """Generate; if the engine rejects the batch, bisect so one bad prompt costs only itself."""
    if not convs:
        return []
    try:
        return list(gen.generate(convs))
    except Exception as err:  # an engine error for one prompt (too long, bad encoding...)
        if len(convs) == 1:
            log.warning("generation failed for one prompt: %s", err)
            return [None]
        mid = len(convs) // 2
        return _safe_generate(gen, convs[:mid]) + _safe_generate(gen, convs[mid:])


def generate_views(
    gen: Generator,
    encoder: Encoder,
    items: list[dict[str, Any]],
    requests: list[tuple[int, str]],
    cfg: LLMConfig,
    shas: dict[str, str],
) -> dict[str, Any]:
    """VIEWS rows for ``requests`` = [(index into items, view)], plus counters."""
    floors = {"specific": cfg.min_faithfulness_specific, "agnostic": cfg.min_faithfulness_agnostic}
    echo = {v: echo_ngrams(instruction_words(getattr(cfg.prompts, v)), cfg.echo_ngram) for v in shas}
    content_vec = encoder.encode([content_text(it) for it in items])
    problems: Counter[str] = Counter()
    # What explains throughput: prefilled vs cached prompt tokens, prompts per engine call.
    load = {"prompt_tokens": 0, "cached_tokens": 0, "prompts": 0, "engine_calls": 0}
    tokens = [0] * len(requests)
    attempts = [0] * len(requests)
    accepted: dict[int, tuple[str, float]] = {}
    pending = list(range(len(requests)))
    convs: dict[int, list[dict[str, str]]] = {}
    for r in pending:
        i, view = requests[r]
        try:
            convs[r] = render_messages(getattr(cfg.prompts, view), items[i])
        except Exception as err:  # a bad item field never fails the batch
            log.warning("item %s: cannot render the %s prompt: %s", items[i].get("item_id"), view, err)
            problems["render_error"] += 1
    pending = [r for r in pending if r in convs]
    for _ in range(cfg.max_retries + 1):
        if not pending:
            break
        outs = _safe_generate(gen, [convs[r] for r in pending])
        load["engine_calls"] += 1
        load["prompts"] += len(pending)
        for out in outs:
            if out is not None:
                load["prompt_tokens"] += out.prompt_tokens
                load["cached_tokens"] += out.cached_tokens
        candidates: list[tuple[int, str]] = []
        for r, out in zip(pending, outs, strict=True):
            attempts[r] += 1
            if out is None:
                problems["engine_error"] += 1
                continue
            tokens[r] += out.tokens
            i, view = requests[r]
            text = clean(out.text, out.finish_reason, cfg.keep_truncated)
            problem = check_view(text, view, items[i], cfg, echo[view])
            if problem in ("empty", "too_short") and out.finish_reason == "length":
                problem = "truncated"  # hit max_tokens before finishing a sentence
            if problem:
                problems[problem] += 1
            else:
                candidates.append((r, text))
        if candidates:
            vec = encoder.encode([t for _, t in candidates])
            for (r, text), v in zip(candidates, vec, strict=True):
                i, view = requests[r]
                score = float(np.dot(v, content_vec[i]))
                if score < floors[view]:
                    problems["unfaithful"] += 1
                else:
                    accepted[r] = (text, score)
        pending = [r for r in pending if r not in accepted]
    # Whatever is left falls back to content-derived text (never empty).
    fallback_rs = [r for r in range(len(requests)) if r not in accepted]
    fb_texts = [fallback_text(requests[r][1], items[requests[r][0]], cfg) for r in fallback_rs]
    fb_vec = encoder.encode(fb_texts) if fb_texts else None
    rows = []
    for r in range(len(requests)):
        i, view = requests[r]
        if r in accepted:
            text, score, fb = *accepted[r], False
        else:
            k = fallback_rs.index(r)
            text, score, fb = fb_texts[k], float(np.dot(fb_vec[k], content_vec[i])), True
        rows.append(
            {
                "item_id": int(items[i]["item_id"]),
                "view": view,
                "model": cfg.model,
                "prompt_sha": shas[view],
                "text": text,
                "fallback": fb,
                "faithfulness": score,
                "attempts": attempts[r],
                "generated_tokens": tokens[r],
            }
        )
    return {"rows": rows, "problems": dict(problems), "tokens": sum(tokens), **load}


def _set_threads(n: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(n)
    import torch

    torch.set_num_threads(n)


class ViewWorker:
    """Ray actor body: one generation engine + one faithfulness encoder."""

    def __init__(self, model_path: str, encoder_path: str, llm: LLMConfig, enc: EncoderConfig, seed: int,
                 engine_id: int = 0):
        t0 = time.perf_counter()
        _set_threads(llm.omp_threads or 1)
        self.cfg = llm
        self.engine_id = engine_id
        self.gen = make_generator(model_path, llm, seed)
        # Faithfulness always uses sentence-transformers with the configured encoder model:
        # a second vLLM engine per actor would double its memory.
        enc_st = EncoderConfig(**{**enc.__dict__, "backend": "sentence_transformers", "use_gpu": llm.use_gpu})
        self.encoder = make_encoder(encoder_path, enc_st)
        self.start_seconds = time.perf_counter() - t0

    def ready(self) -> dict[str, Any]:
        """Start-up facts for the stage report, resolved on this actor's machine."""
        from semacdr_dist.hardware import cpu_info

        return {
            "engine": self.engine_id,
            "start_seconds": self.start_seconds,
            "dtype": self.gen.dtype,
            "dtype_reason": self.gen.dtype_reason,
            "threads": self.cfg.omp_threads or 1,
            "cpu": cpu_info().describe(),
        }

    def process(self, items: list[dict[str, Any]], requests: list[tuple[int, str]], shas: dict[str, str]) -> dict:
        t0 = time.perf_counter()
        out = generate_views(self.gen, self.encoder, items, requests, self.cfg, shas)
        out["seconds"] = time.perf_counter() - t0
        out["engine"] = self.engine_id
        return out


class EncodeWorker:
    """Ray actor body: one text encoder."""

    def __init__(self, model_path: str, cfg: EncoderConfig):
        _set_threads(cfg.omp_threads)
        self.encoder = make_encoder(model_path, cfg)

    def ready(self) -> dict[str, Any]:
        return {"dim": self.encoder.dim, "dtype": self.encoder.dtype, "dtype_reason": self.encoder.dtype_reason}

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode(texts)


@dataclass
class _Task:
    payload: Any
    tries: int = 0
    slot: int = -1
    actor: Any = None


@dataclass
class PoolStats:
    actor_restarts: int = 0
    batch_retries: int = 0
    bisections: int = 0
    failed_payloads: int = 0
    start_seconds: float = 0.0
    actors: list[Any] = field(default_factory=list)  # what each actor's ready() returned
    errors: list[str] = field(default_factory=list)


class ActorPool:
    """A fixed number of actors; ``map_unordered`` survives actors dying mid-call.

    ``make_actor(slot)`` creates an actor; ``call(actor, payload)`` returns an
    ObjectRef; ``split(payload)`` halves a payload (None when it cannot be split).
    """

    def __init__(
        self,
        make_actor: Callable[[int], Any],
        size: int,
        call: Callable[[Any, Any], Any],
        split: Callable[[Any], tuple[Any, Any] | None],
        max_in_flight: int = 2,
        max_retries: int = 2,
        max_restarts: int = 3,
    ):
        self.make_actor, self.size, self.call, self.split = make_actor, size, call, split
        self.max_in_flight, self.max_retries, self.max_restarts = max_in_flight, max_retries, max_restarts
        self.actors: list[Any] = []
        self.restarts = [0] * size
        self.stats = PoolStats()

    def start(self) -> None:
        """Create the actors and wait until each has loaded its model."""
        import ray

        t0 = time.perf_counter()
        self.actors = [self.make_actor(s) for s in range(self.size)]
        self.stats.actors = ray.get([a.ready.remote() for a in self.actors])
        self.stats.start_seconds = time.perf_counter() - t0

    def close(self) -> None:
        import ray

        for a in self.actors:
            if a is not None:
                ray.kill(a)
        self.actors = []

    def _replace(self, slot: int, dead: Any) -> None:
        import ray

        if self.actors[slot] is not dead:  # already replaced after another failed call
            return
        self.restarts[slot] += 1
        self.stats.actor_restarts += 1
        try:
            ray.kill(dead)
        except Exception:  # already gone
            pass
        if self.restarts[slot] > self.max_restarts:
            log.error("engine actor slot %d died %d times; retiring it", slot, self.restarts[slot])
            self.actors[slot] = None
            if all(a is None for a in self.actors):
                raise RuntimeError("every engine actor died repeatedly; see the errors above")
            return
        log.warning("engine actor slot %d died; starting a new one (restart %d)", slot, self.restarts[slot])
        self.actors[slot] = self.make_actor(slot)

    def map_unordered(self, payloads: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        """Yield (payload, result) as calls finish; result is None for a payload that kept failing."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        source = iter(payloads)
        queue: list[_Task] = []  # resubmissions first
        running: dict[Any, _Task] = {}
        load = [0] * self.size
        exhausted = False
        while True:
            capacity = [s for s in range(self.size) if self.actors[s] is not None and load[s] < self.max_in_flight]
            while capacity:
                if not queue and not exhausted:
                    nxt = next(source, None)
                    if nxt is None:
                        exhausted = True
                    else:
                        queue.append(_Task(nxt))
                if not queue:
                    break
                task = queue.pop(0)
                slot = min(capacity, key=lambda s: load[s])
                task.slot, task.actor = slot, self.actors[slot]
                running[self.call(task.actor, task.payload)] = task
                load[slot] += 1
                capacity = [s for s in capacity if load[s] < self.max_in_flight]
            if not running:
                if exhausted and not queue:
                    return
                if all(a is None for a in self.actors):
                    raise RuntimeError("no engine actor left")
                continue
            done, _ = ray.wait(list(running), num_returns=1)
            task = running.pop(done[0])
            load[task.slot] -= 1
            try:
                result = ray.get(done[0])
            except (RayActorError, RayTaskError) as err:
                self.stats.errors.append(f"{type(err).__name__}: {str(err)[:300]}")
                if isinstance(err, RayActorError) or "ActorDied" in str(err):
                    self._replace(task.slot, task.actor)
                task.tries += 1
                if task.tries <= self.max_retries:
                    self.stats.batch_retries += 1
                    queue.insert(0, _Task(task.payload, task.tries))
                    continue
                halves = self.split(task.payload)
                if halves is None:
                    self.stats.failed_payloads += 1
                    log.error("giving up on a payload after %d tries: %s", task.tries, err)
                    yield task.payload, None
                    continue
                self.stats.bisections += 1
                queue[:0] = [_Task(halves[0]), _Task(halves[1])]
                continue
            yield task.payload, result
