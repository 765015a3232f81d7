"""Mean and 95% interval of the test accuracy over seeds, from the runs' log files.

    python parse_results.py output/caltech101/DPL_MaPLe          # few-shot runs, one row per setting
    python parse_results.py output/evaluation/DPL_MaPLe          # cross-dataset: one row per dataset
    python parse_results.py --base2new output/base2new           # base, new and harmonic mean

Every folder named ``seed<N>`` below the given folders is one run; runs whose paths differ only in
that last component are one group (CoOp/MaPLe output conventions). A run's accuracy is the last
``* accuracy: X%`` that Dassl's evaluator printed, read from the newest of its ``log.txt*`` files that
has one (a resumed run writes ``log.txt-<time>``). The interval is CoOp's ``--ci95``:
``1.96 * std / sqrt(n)`` with the population std; ``--student-t`` uses Student's t and the sample std.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import sys
from typing import Dict, List, Optional, Tuple

ACCURACY = re.compile(r"^\* accuracy: ([\d.eE+-]+)%", re.MULTILINE)
SEED_DIR = re.compile(r"^seed\d+$")
# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
       2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def run_accuracy(run_dir: str) -> Optional[float]:
    logs = [os.path.join(run_dir, f) for f in os.listdir(run_dir) if f.startswith("log.txt")]
    for path in sorted(logs, key=os.path.getmtime, reverse=True):
        with open(path, errors="replace") as f:
            found = ACCURACY.findall(f.read())
        if found:
            return float(found[-1])
    return None


def collect(root: str) -> Dict[str, List[Tuple[str, float]]]:
    """``{group (path relative to root, seed folder removed): [(seed, accuracy), ...]}``."""
    groups: Dict[str, List[Tuple[str, float]]] = {}
    for directory, subdirs, _ in os.walk(root):
        subdirs.sort()
        if not SEED_DIR.match(os.path.basename(directory)):
            continue
        subdirs[:] = []  # a run's own folders (search/, prompt_learner/) hold no further runs
        accuracy = run_accuracy(directory)
        if accuracy is None:
            print(f"no result yet in {directory}", file=sys.stderr)
            continue
        group = os.path.relpath(os.path.dirname(directory), root)
        groups.setdefault(group, []).append((os.path.basename(directory), accuracy))
    return groups


def interval(values: List[float], student_t: bool = False) -> float:
    n = len(values)
    if n < 2:
        return float("nan")
    if student_t:
        return (T95[n - 2] if n - 1 <= len(T95) else 1.96) * statistics.stdev(values) / math.sqrt(n)
    return 1.96 * statistics.pstdev(values) / math.sqrt(n)


def summarise(root: str, student_t: bool = False) -> Dict[str, float]:
    groups = collect(root)
    if not groups:
        raise SystemExit(f"no finished runs (seed*/log.txt with '* accuracy: X%') under {root}")
    width = max(len(g) for g in groups)
    print(f"{'setting':<{width}}  seeds   mean    ±95%   per seed")
    means = {}
    for group in sorted(groups):
        runs = sorted(groups[group])
        values = [acc for _, acc in runs]
        means[group] = statistics.fmean(values)
        seeds = " ".join(f"{seed}={acc:.2f}" for seed, acc in runs)
        spread = f"{interval(values, student_t):6.2f}" if len(values) >= 2 else f"{'-':>6}"  # one seed: no interval
        print(f"{group:<{width}}  {len(values):>5}  {means[group]:6.2f}  {spread}   {seeds}")
    return means


def base_to_new(root: str, student_t: bool = False) -> None:
    """``root/train_base/<rest>`` (base accuracy) and ``root/test_new/<rest>`` (new accuracy)."""
    print(f"== base classes ({root}/train_base)")
    base = summarise(os.path.join(root, "train_base"), student_t)
    print(f"\n== new classes ({root}/test_new)")
    new = summarise(os.path.join(root, "test_new"), student_t)
    print("\n== harmonic mean of the mean base and new accuracies")
    for group in sorted(set(base) & set(new)):
        b, n = base[group], new[group]
        print(f"{group}: base {b:.2f}  new {n:.2f}  HM {2 * b * n / (b + n) if b + n else 0.0:.2f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", help="folders holding seed*/ run folders (searched recursively)")
    parser.add_argument("--base2new", action="store_true", help="dirs are base2new roots (train_base/, test_new/)")
    parser.add_argument("--student-t", action="store_true", help="Student's t interval instead of CoOp's 1.96")
    args = parser.parse_args(argv)
    for i, root in enumerate(args.dirs):
        if i:
            print()
        if args.base2new:
            base_to_new(root, args.student_t)
        else:
            print(f"== {root}")
            summarise(root, args.student_t)


if __name__ == "__main__":
    main()
