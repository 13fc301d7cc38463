"""Run every throughput benchmark, then gather their JSON into one markdown report.

    python benchmarks/run_all.py            # run each benchmark (full size), then gather
    python benchmarks/run_all.py --quick    # small runs, for a smoke check
    python benchmarks/run_all.py --gather   # only gather benchmarks/results/*.json

Writes benchmarks/results/README.md: each benchmark's own markdown table, with
the command and the machine it was measured on.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
RESULTS = HERE / "results"
# Order: cheapest first; quality.py is separate (`make bench-quality`, hours on CPU).
BENCHMARKS = ("prepare", "model", "evaluate", "train", "semantics")


def run(names: list[str], quick: bool) -> dict[str, int]:
    codes = {}
    for name in names:
        script = HERE / f"{name}.py"
        if not script.exists():
            codes[name] = -1
            continue
        cmd = [sys.executable, str(script), *(["--quick"] if quick else [])]
        t0 = time.perf_counter()
        print(f"== {' '.join(cmd)}", flush=True)
        codes[name] = subprocess.call(cmd)
        print(f"== {name}: exit {codes[name]} in {time.perf_counter() - t0:.0f}s", flush=True)
        if codes[name] == 0:
            stamp_machine(RESULTS / f"{name}.json", " ".join(cmd[1:]), quick)
    return codes


def stamp_machine(path: Path, command: str, quick: bool) -> None:
    """Record in a benchmark's JSON the machine it ran on: CPU model, flags (bf16/AMX), cores.

    A figure without its CPU is not a figure: the same code runs 2x apart on CPUs with
    and without native bf16. What the benchmark recorded itself (its dtype, load) is kept.
    """
    from semacdr_dist.hardware import machine_summary

    if not path.exists():
        return
    data = json.loads(path.read_text())
    own = data.get("machine")
    data["machine"] = {**machine_summary(), **(own if isinstance(own, dict) else {"note": own} if own else {})}
    data.setdefault("command", command)
    data["date"] = time.strftime("%Y-%m-%d")
    data["quick"] = quick
    path.write_text(json.dumps(data, indent=2))
    md = path.with_suffix(".md")
    if md.exists():  # the table itself names the CPU too, not only the gathered report
        m = data["machine"]
        line = f"Measured on: {m['describe']}; flags {', '.join(m['flags']) or 'none'}; {data['date']}."
        body = [x for x in md.read_text().splitlines() if not x.startswith("Measured on: ")]
        md.write_text("\n".join([*body[:1], "", line, *body[1:]]) + "\n")


def gather(results: Path = RESULTS) -> str:
    """One markdown report from every `<name>.json` (+ its `<name>.md` table) in `results`."""
    parts = ["# Benchmark results", "",
             "Gathered by `benchmarks/run_all.py`; each section is written by `benchmarks/<name>.py`.", ""]
    for js in sorted(results.glob("*.json")):
        name = js.stem
        data = json.loads(js.read_text())
        parts.append(f"## {name}")
        meta = {k: data[k] for k in ("command", "date", "quick") if k in data}
        machine = data.get("machine") or {}
        if "describe" in machine:
            meta["machine"] = (f"{machine['describe']}; flags {', '.join(machine.get('flags', [])) or 'none'}"
                               + (f"; dtype {machine['dtype']}" if machine.get("dtype") else ""))
        else:
            meta["machine"] = "not recorded (measured before run_all stamped the CPU: re-run it)"
        parts.append("")
        parts += [f"- {k}: `{v}`" for k, v in meta.items()]
        md = results / f"{name}.md"
        parts += ["", md.read_text().strip() if md.exists() else "```json\n" + json.dumps(data, indent=2)[:4000] + "\n```", ""]
    return "\n".join(parts) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small runs for a smoke check")
    ap.add_argument("--gather", action="store_true", help="only gather existing results")
    ap.add_argument("--only", nargs="*", default=list(BENCHMARKS), help="benchmarks to run")
    args = ap.parse_args()
    codes = {} if args.gather else run(args.only, args.quick)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "README.md").write_text(gather())
    print(f"report: {RESULTS / 'README.md'}")
    failed = {k: v for k, v in codes.items() if v != 0}
    if failed:
        print(f"failed or missing: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
