"""Mutation score per module from mutmut's results under ./mutants (run by `make mutation`).

Prints, per mutated module, the mutants killed, survived, not reached by any test ("no
tests") and not yet checked, the score ``killed / checked`` (timeouts count as killed,
mutants nobody checked are left out) and, with ``--survivors``, each surviving mutant's diff.

usage: python scripts/mutation_report.py [--survivors] [MODULE_PREFIX ...]
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

KILLED = {"killed", "timeout", "caught by type check"}


def _status(exit_code: int | None) -> str:
    from mutmut.stats import status_by_exit_code  # mutmut's own reading of its exit codes

    return status_by_exit_code[exit_code]


def results(root: Path = Path("mutants")) -> dict[str, dict[str, str]]:
    """``{module: {mutant: status}}`` from the ``.meta`` files mutmut writes."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for meta in sorted(root.rglob("*.py.meta")):
        module = ".".join(meta.relative_to(root).with_suffix("").with_suffix("").parts)
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        for mutant, code in codes.items():
            out[module][mutant] = _status(code)
    return out


def main(argv: list[str]) -> int:
    """Prints the mutation score per module (``--survivors``: each survivor); 1 without results."""
    show = "--survivors" in argv
    prefixes = [a for a in argv if not a.startswith("--")]
    table = results()
    if not table:
        print("no mutmut results under ./mutants: run `make mutation` first")
        return 1
    print(f"{'module':48} {'killed':>6} {'surv.':>6} {'no test':>7} {'unchk.':>6} {'score':>6}")
    survivors = []
    for module, statuses in table.items():
        if prefixes and not any(module.startswith(p) for p in prefixes):
            continue
        counts = Counter(statuses.values())
        killed = sum(counts[s] for s in KILLED)
        unchecked = counts["not checked"] + counts["skipped"]
        checked = len(statuses) - unchecked
        if not checked:
            continue
        score = f"{100 * killed / checked:5.1f}%"
        missed = checked - killed - counts["no tests"]
        print(f"{module:48} {killed:6} {missed:6} {counts['no tests']:7} {unchecked:6} {score:>6}")
        survivors += [(m, s) for m, s in statuses.items() if s not in KILLED | {"not checked"}]
    if show:
        for mutant, status in survivors:
            print(f"\n=== {mutant} ({status})")
            subprocess.run([Path(sys.executable).parent / "mutmut", "show", mutant], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
