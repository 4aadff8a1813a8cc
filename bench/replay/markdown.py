"""A replay results file (``run.py --out``) as the Markdown table bench/results/README.md shows::

    .venv/bin/python -m bench.replay.markdown bench/results/replay_ab-20seeds.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def table(results: dict, baseline: str = "default") -> str:
    """One row per design: best so far at each budget (mean ± sd over seeds, and the change from the baseline
    in points), seeds that reached the target and the epochs they needed."""
    designs = results["designs"]
    budgets = list(designs[baseline]["best_at_budget"])
    lines = [f"| design | overrides | {' | '.join(f'@{b}' for b in budgets)} | reached {results['target']} "
             f"| epochs to it |", "|---" * (len(budgets) + 4) + "|"]
    for name, d in designs.items():
        cells = []
        for b in budgets:
            at, base = d["best_at_budget"][b], designs[baseline]["best_at_budget"][b]
            delta = "" if name == baseline else f" ({100 * (at['mean'] - base['mean']):+.2f})"
            cells.append(f"{at['mean']:.4f} ± {at['sd']:.4f}{delta}")
        reach = f"{d['epochs_to_target']['mean']:.1f}" if d["epochs_to_target"] else "-"
        lines.append(f"| {name} | `{d['overrides'] or '(none)'}` | {' | '.join(cells)} | "
                     f"{d['target_reached_by']} of {results['seeds']} | {reach} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(json.loads(Path(sys.argv[1]).read_text()), *sys.argv[2:]))
