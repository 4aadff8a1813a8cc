"""The compute-economy table in bench/results/README.md, from the JSON the four benchmarks wrote.

Rewrites the part of the README between the two markers below (everything else there is kept), with every
ratio and figure against its goal and the machine each was measured on; a benchmark not yet run is listed as
such. ``make bench`` runs it last.

    python -m bench.table
"""

from __future__ import annotations

import json

from bench.common import RESULTS

BEGIN, END = "<!-- compute-economy:begin -->", "<!-- compute-economy:end -->"


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _mb(value: float) -> str:
    return f"{value / 1e6:,.1f} MB" if value >= 1e5 else f"{value / 1e3:,.1f} kB"


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def rows() -> list[str]:
    out = ["| benchmark | figure | measured | goal | |", "|---|---|---|---|---|"]
    if cb := _load("checkpoint_bytes"):
        for r in cb["per_trial_epoch"]:
            out.append(f"| checkpoint_bytes | bytes per trial-epoch, freeze depth {r['freeze_depth']} "
                       f"({r['trainable_fraction']:.0%} trainable) | {_mb(r['old_bytes'])} before -> "
                       f"{_mb(r['new_bytes_improved'])} (best epoch) / {_mb(r['new_bytes_not_improved'])} (other): "
                       f"{r['ratio_improved']:.3f}x / {r['ratio_not_improved']:.3f}x | frozen layers never written "
                       f"({r['frozen_bytes_written']} bytes) | {_met(r['frozen_bytes_written'] == 0)} |")
        if s := cb.get("default_study"):
            out.append(f"| checkpoint_bytes | default study, {s['trial_epochs']} trial-epochs, written | "
                       f"{_mb(s['written_old_layout_bytes'])} before -> {_mb(s['written_bytes'])} "
                       f"({s['written_ratio']:.3f}x) | | |")
            out.append(f"| checkpoint_bytes | default study, storage when it ends | {_mb(s['storage_at_end_bytes'])}"
                       f" = {s['storage_over_best_model']:.2f}x the best model ({_mb(s['best_model_full_bytes'])}) | "
                       f"<= 2x | {_met(s['storage_over_best_model'] <= 2)} |")
    if ts := _load("trainer_speed"):
        for label, r in ts["depths"].items():
            out.append(f"| trainer_speed | trainer / bare loop, freeze {label} ({r['freeze_depth']}) | "
                       f"{r['trainer_over_bare']:.3f} ({r['trainer_examples_per_s']:.1f} vs "
                       f"{r['bare_examples_per_s']:.1f} ex/s) | >= {ts['goal_trainer_over_bare']} | "
                       f"{_met(r['trainer_over_bare'] >= ts['goal_trainer_over_bare'])} |")
        out.append(f"| trainer_speed | all frozen / none frozen | {ts['all_frozen_over_none']:.2f}x | >= 2x | "
                   f"{_met(ts['all_frozen_over_none'] >= 2)} |")
    if oh := _load("overhead"):
        for r in oh["results"]:
            large, bare = r["runs"][f"study_{r['trials'][1]}"], r["runs"][f"bare_{r['trials'][1]}"]
            out.append(f"| overhead | {r['epochs']} epoch(s): study / bare wall, {r['trials'][1]} trials | "
                       f"{r['wall_ratio']:.2f}x | | |")
            out.append(f"| overhead | {r['epochs']} epoch(s): fixed cost per trial | "
                       f"{r['fixed_cost_per_trial_s']:.2f} s (one-time {r['one_time_s']:.1f} s) | <= 0.5 s | "
                       f"{_met(r['fixed_cost_per_trial_s'] <= 0.5)} |")
            out.append(f"| overhead | {r['epochs']} epoch(s): time to first step | {large['first_step_s']:.1f} s "
                       f"(bare {bare['first_step_s']:.1f} s) | reported | |")
        out.append(f"| overhead | a 60-second, 3-epoch trial | {oh['overhead_for_60s_trials']:.1%} | <= 3% | "
                   f"{_met(oh['overhead_for_60s_trials'] <= 0.03)} |")
    if sc := _load("scale"):
        for r in sc["sizes"]:
            out.append(f"| scale | {r['trials']} trials on {sc['gpus']} GPUs: driver CPU, peak memory, start rate | "
                       f"{r['driver_cpu_s']:.0f} s ({r['driver_cpu_s_per_trial'] * 1000:.0f} ms/trial), "
                       f"{r['driver_peak_rss_mb']:.0f} MB, {r['trials_started_per_s']:.2f} trials/s; MLflow "
                       f"{r['mlflow']['calls_per_s']:.0f}/s (p99 {r['mlflow']['p99_ms']:.0f} ms), registry "
                       f"{r['registry']['calls_per_s']:.0f}/s (p99 {r['registry']['p99_ms']:.0f} ms) | | |")
        out.append(f"| scale | driver CPU per trial, largest / smallest study | {sc['cpu_per_trial_growth']:.2f}x | "
                   f"linear (~1x) | {_met(sc['cpu_per_trial_growth'] <= 1.25)} |")
        bound = 60 / sc["sizes"][-1]["driver_cpu_s_per_trial"]  # one core of driver CPU, all of it
        out.append(f"| scale | GPUs one driver keeps busy with 60-second trials | "
                   f"{sc['gpus_kept_busy_60s_trials']:.0f} at the start rate measured here (the 2 cores are shared "
                   f"with 64 workers); {bound:.0f} if the driver had a core to itself (60 s / its CPU per trial) "
                   f"| reported | |")
    machines = sorted({d["machine"] for d in (cb, ts, oh, sc) if d})
    missing = [n for n, d in (("checkpoint_bytes", cb), ("trainer_speed", ts), ("overhead", oh), ("scale", sc))
               if d is None]
    out.append("")
    out.append("Measured on: " + "; ".join(machines) + "."
               + (f" Not run yet: {', '.join(missing)}." if missing else ""))
    return out


def main() -> None:
    readme = RESULTS / "README.md"
    text = readme.read_text()
    table = "\n".join([BEGIN, *rows(), END])
    if BEGIN in text:
        text = text[:text.index(BEGIN)] + table + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n## Compute economy (issue 12): `make bench`\n\n" + table + "\n"
    readme.write_text(text)
    print(table)


if __name__ == "__main__":
    main()
