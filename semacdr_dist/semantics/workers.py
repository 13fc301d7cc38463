"""View generation for a batch of items, the Ray actor that runs it, and its pool.

:func:`generate_views` is a plain function (generator + encoder in, VIEWS rows
out): render both prompts, generate, validate, score faithfulness, resample
the failures, fall back after ``max_retries``. `ViewWorker` holds one engine and
one faithfulness encoder in a Ray actor; `EncodeTexts` is the Ray Data UDF that
encodes features/ texts (`features.build_features`).

Fault handling is Ray's: engine actors are created with ``max_restarts`` and
``max_task_retries``, so an actor that dies (SIGKILL, OOM, a crashing engine) is
restarted by Ray and the calls it held run again on the new incarnation.
`EnginePool` only keeps ``max_in_flight`` calls queued per actor, stops using an
actor Ray gave up on, and bisects a batch whose call still failed down to the
item that fails (which then gets fallback rows).
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


def _incarnation() -> dict[str, Any]:
    """Which life of this actor answers: Ray restarts a dead actor in a new process."""
    return {"pid": os.getpid(), "started_at": time.time()}


class ViewWorker:
    """Ray actor body: one generation engine + one faithfulness encoder."""

    def __init__(self, model_path: str, encoder_path: str, llm: LLMConfig, enc: EncoderConfig, seed: int,
                 engine_id: int = 0):
        self.incarnation = _incarnation()
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
            "incarnation": self.incarnation,
        }

    def process(self, items: list[dict[str, Any]], requests: list[tuple[int, str]], shas: dict[str, str]) -> dict:
        t0 = time.perf_counter()
        out = generate_views(self.gen, self.encoder, items, requests, self.cfg, shas)
        out["seconds"] = time.perf_counter() - t0
        out["engine"] = self.engine_id
        out["incarnation"] = self.incarnation
        return out


class EncodeTexts:
    """Ray Data UDF (an actor pool of ``map_batches``): one text encoder, ``text`` -> ``vector``."""

    def __init__(self, model_path: str, cfg: EncoderConfig):
        _set_threads(cfg.omp_threads)
        self.encoder = make_encoder(model_path, cfg)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vec = self.encoder.encode([str(t) for t in batch["text"]])
        n = len(vec)
        return {"pos": np.asarray(batch["pos"], dtype=np.int64), "vector": vec,
                "dtype": np.full(n, str(self.encoder.dtype)), "dtype_reason": np.full(n, self.encoder.dtype_reason)}


@dataclass
class PoolStats:
    actor_restarts: int = 0  # new incarnations (Ray restarted an actor) that answered
    batch_retries: int = 0  # calls that ran on an incarnation started after they were sent
    bisections: int = 0
    failed_payloads: int = 0
    start_seconds: float = 0.0
    actors: list[Any] = field(default_factory=list)  # what each actor's ready() returned
    errors: list[str] = field(default_factory=list)


@dataclass
class _Call:
    payload: Any
    slot: int
    sent_at: float
    alone: bool  # the only call on its actor: if it fails, it failed by itself


class EnginePool:
    """``map_unordered`` over actors that Ray restarts itself (``max_restarts``/``max_task_retries``).

    ``actors``: created with those options and a ``ready()`` method; ``call(actor, payload)``
    returns an ObjectRef; ``split(payload)`` halves a payload (None when it cannot be split).
    Results that carry an ``incarnation`` (pid, start time) feed the restart/retry counters.

    A call that still fails after Ray's retries may have failed because of a neighbour on the
    same actor (a poison item kills every call queued with it), so it runs again alone; a call
    that fails alone is bisected, each half alone, down to the item that fails by itself.
    """

    def __init__(self, actors: list[Any], call: Callable[[Any, Any], Any],
                 split: Callable[[Any], tuple[Any, Any] | None], max_in_flight: int = 2):
        self.actors, self.call, self.split, self.max_in_flight = list(actors), call, split, max_in_flight
        self.live = [True] * len(self.actors)
        self.lives: list[set[tuple[int, float]]] = [set() for _ in self.actors]
        self.stats = PoolStats()

    def start(self) -> None:
        """Wait until each actor has loaded its model."""
        import ray

        t0 = time.perf_counter()
        self.stats.actors = ray.get([a.ready.remote() for a in self.actors])
        for slot, info in enumerate(self.stats.actors):
            self._seen(slot, info, sent_at=None)
        self.stats.start_seconds = time.perf_counter() - t0

    def close(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)  # no_restart: the pool's actors end with it
        self.actors, self.live = [], []

    def _seen(self, slot: int, result: Any, sent_at: float | None) -> None:
        inc = result.get("incarnation") if isinstance(result, dict) else None
        if not inc:
            return
        key = (inc["pid"], inc["started_at"])
        if self.lives[slot] and key not in self.lives[slot]:
            self.stats.actor_restarts += 1
            log.warning("engine actor %d was restarted by Ray (now pid %d)", slot, inc["pid"])
        self.lives[slot].add(key)
        if sent_at is not None and inc["started_at"] > sent_at:
            self.stats.batch_retries += 1

    def map_unordered(self, payloads: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        """Yield (payload, result) as calls finish; result is None for an item that kept failing.

        A payload is taken from ``payloads`` only when an actor has room for it.
        """
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        source = iter(payloads)
        retry: list[Any] = []  # payloads (or halves) to run alone on an idle actor, before new ones
        running: dict[Any, _Call] = {}
        probes: dict[Any, int] = {}  # ready() calls to actors whose call failed: alive again, or gone?
        load = [0] * len(self.actors)
        alone = [False] * len(self.actors)
        exhausted = False
        while True:
            usable = [s for s in range(len(self.actors)) if self.live[s] and s not in probes.values()
                      and not alone[s]]
            while retry and (idle := [s for s in usable if load[s] == 0]):
                slot, payload = idle[0], retry.pop(0)
                running[self.call(self.actors[slot], payload)] = _Call(payload, slot, time.time(), True)
                load[slot], alone[slot] = 1, True
                usable.remove(slot)
            while not retry and not exhausted and (free := [s for s in usable if load[s] < self.max_in_flight]):
                nxt = next(source, None)
                if nxt is None:
                    exhausted = True
                    break
                slot = min(free, key=lambda s: load[s])
                running[self.call(self.actors[slot], nxt)] = _Call(nxt, slot, time.time(), False)
                load[slot] += 1
            if not running and not probes:
                if exhausted and not retry:
                    return
                if not any(self.live):
                    raise RuntimeError("every engine actor died and Ray could not restart it; see the errors above")
                continue
            done = ray.wait([*running, *probes], num_returns=1)[0][0]
            if done in probes:
                slot = probes.pop(done)
                try:
                    self._seen(slot, ray.get(done), sent_at=None)
                except (RayActorError, RayTaskError) as err:
                    log.error("engine actor %d is gone (%s); continuing without it", slot, type(err).__name__)
                    self.live[slot] = False
                    if not any(self.live):
                        raise RuntimeError("every engine actor died and Ray could not restart it; "
                                           "see the errors above") from err
                continue
            task = running.pop(done)
            load[task.slot] -= 1
            alone[task.slot] = False
            try:
                result = ray.get(done)
            except (RayActorError, RayTaskError) as err:
                # Ray already re-ran the call on a restarted actor max_task_retries times (or the
                # call raised): run it alone, then split it, so a bad item costs only itself.
                self.stats.errors.append(f"{type(err).__name__}: {str(err)[:300]}")
                if isinstance(err, RayActorError) and task.slot not in probes.values() and self.live[task.slot]:
                    probes[self.actors[task.slot].ready.remote()] = task.slot
                if not task.alone:
                    retry.append(task.payload)
                    continue
                halves = self.split(task.payload)
                if halves is None:
                    self.stats.failed_payloads += 1
                    log.error("giving up on a payload: %s", err)
                    yield task.payload, None
                else:
                    self.stats.bisections += 1
                    retry[:0] = list(halves)
                continue
            self._seen(task.slot, result, task.sent_at)
            yield task.payload, result
