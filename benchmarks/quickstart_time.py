"""End-to-end wall-clock of the quickstart, with denormals flushed (the default) and without (issue 26).

Runs ``lsrl fit --config quickstart`` (dense SAC, HalfCheetah-v5, 5 000 random + 10 000 training steps, four
evaluations of 5 episodes, progress bar and checkpoints on) as a user would, alternating the two arithmetics
for ``--rounds`` rounds, each in a fresh process under a temporary ``runs/`` folder. ``LSRL_FLUSH_DENORMALS=0``
is the package's arithmetic before the fix. Prints the CPU model, each run's seconds and final evaluation
return, and the median ratio.

Usage: ``python benchmarks/quickstart_time.py [--rounds 2] [--threads 2] [--json out.json]``
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from throughput import bf16_support, cpu_name

HERE = Path(__file__).resolve().parent


def run_quickstart(flush: bool, threads: int) -> dict[str, float]:
    """Seconds of one ``lsrl fit --config quickstart`` and its last evaluation return."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["LSRL_FLUSH_DENORMALS"] = "1" if flush else "0"
    lsrl = Path(sys.executable).with_name("lsrl")
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        subprocess.run(
            [str(lsrl), "fit", "--config", "quickstart"], env=env, cwd=workdir, check=True, capture_output=True
        )
        seconds = time.perf_counter() - start
        (evaluations,) = Path(workdir).glob("runs/quickstart/version_*/evaluations.csv")
        rows = list(csv.DictReader(evaluations.open()))
    return {"seconds": seconds, "last_return": float(rows[-1]["return"])}


def main() -> None:
    """Alternate flushed and unflushed quickstarts; print the times and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; bf16: {bf16_support()}; {os.cpu_count()} cores; {args.threads} thread(s)")
    runs: dict[str, list[dict[str, float]]] = {"flushed": [], "unflushed": []}
    for round_ in range(args.rounds):
        for label in ("unflushed", "flushed") if round_ % 2 == 0 else ("flushed", "unflushed"):
            result = run_quickstart(label == "flushed", args.threads)
            runs[label].append(result)
            print(f"  round {round_ + 1} {label:<10} {result['seconds']:7.1f} s  return {result['last_return']:.1f}")
    medians = {label: statistics.median(r["seconds"] for r in rs) for label, rs in runs.items()}
    print(
        f"median: flushed {medians['flushed']:.1f} s, unflushed {medians['unflushed']:.1f} s, "
        f"unflushed/flushed {medians['unflushed'] / medians['flushed']:.2f}"
    )
    if args.json:
        machine = {"cpu": cpu_name(), "bf16": bf16_support(), "cores": os.cpu_count()}
        Path(args.json).write_text(json.dumps({"machine": machine, "threads": args.threads, "runs": runs}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
