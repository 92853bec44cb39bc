"""The tables ``benchmarks/objectives.py`` prints: one row per contestant.

* :func:`print_table`: the figures of :func:`objectives_runs.run`.
* :func:`print_conditional_table`: the figures of :func:`objectives_runs.run_conditional`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["print_conditional_table", "print_table"]


def print_conditional_table(result: dict[str, Any]) -> None:
    """The figures of :func:`run_conditional`, one row per contestant."""
    marks = list(next(iter(result["nll_at"].values())))
    print(
        f"{'contestant':<20} {'iters':>7} "
        + " ".join(f"{'cNLL@' + s + 's':>10}" for s in marks)
        + f" {'gap':>8} {'goal':>5}"
    )
    for name in result["curves"]:
        print(
            f"{name:<20} {result['iterations'][name]:>7} "
            + " ".join(f"{_fmt(result['nll_at'][name][s]):>10}" for s in marks)
            + f" {result['gap_to_true_nats'][name]:>+8.4f}"
            + f" {'met' if result['goal_met'][name] else 'no':>5}"
        )
    print(
        f"true conditional density NLL on the test points: "
        f"{result['true_conditional_nll_on_test']:.4f} (goal: within "
        f"{result['goal_gap_nats']} nats)"
    )


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(result: dict[str, Any]) -> None:
    """The figures of :func:`run`, one row per contestant."""
    marks = list(next(iter(result["nll_at"].values())))
    bpd = "final_bits_per_dim" in result
    head = (
        f"{'contestant':<20} {'iters':>7} "
        + " ".join(f"{'NLL@' + s + 's':>9}" for s in marks)
        + (f" {'bpd':>7}" if bpd else "")
        + (f" {'t->' + str(result['target']):>9}" if "target" in result else "")
        + f" {'SW2 dopri5':>10} {'ED dopri5':>10} {'NFE':>5} {'SW2 eul4':>9} {'SW2 mid4':>9}"
    )
    print(head)
    for name in result["curves"]:
        q = result["sample_quality"][name]
        ref = q["dopri5_1e-5"]
        row = (
            f"{name:<20} {result['iterations'][name]:>7} "
            + " ".join(f"{_fmt(result['nll_at'][name][s]):>9}" for s in marks)
            + (f" {_fmt(result['final_bits_per_dim'][name]):>7}" if bpd else "")
            + (
                f" {_fmt(result['seconds_to_target'][name], '.1f'):>9}"
                if "target" in result
                else ""
            )
            + f" {ref['sliced_w2']:>10.4f} {ref['energy_distance']:>10.4f} {ref['nfe']:>5}"
            + f" {q['euler_4']['sliced_w2']:>9.4f}"
            + f" {q['midpoint_4']['sliced_w2']:>9.4f}"
        )
        print(row)
    scored = {k: q for k, q in result["sample_quality"].items() if "reverse_sde" in q}
    for name, q in scored.items():
        print(
            f"{name} by sampler (SW2 / ED / NFE): "
            + ", ".join(
                f"{s} {v['sliced_w2']:.4f} / {v['energy_distance']:.4f} / {v['nfe']}"
                for s, v in q.items()
            )
        )
    goal = result.get("score_matching_goal")
    if goal is not None:
        print(
            f"score matching vs maximum likelihood: NLL gap {goal['nll_gap_nats']:+.4f} nats "
            f"(goal <= {goal['goal_gap_nats']}: {'met' if goal['nll_goal_met'] else 'not met'}); "
            f"reverse-SDE / CNF energy distance {goal['energy_distance_ratio_sde_to_cnf']:.3f}, "
            f"sliced W2 {goal['sliced_w2_ratio_sde_to_cnf']:.3f} "
            f"(goal <= 1: {'met' if goal['samples_goal_met'] else 'not met'})"
        )
    floor = result["sample_quality_floor"]
    print(
        f"held-out floor (val vs test, n = {result['n_samples']}): SW2 {floor['sliced_w2']:.4f}, "
        f"ED {floor['energy_distance']:.4f}"
    )
    if "true_density_nll_on_test" in result:
        print(f"true density NLL on the test points: {result['true_density_nll_on_test']:.4f}")
    print(f"class-conditional 8gaussians: {result['conditional_8gaussians']}")
