"""``lsrl report``: tables, curves and profiles of a sweep's or runs' evaluation returns, as Markdown, JSON and PNG.

Per environment and configuration, the evaluation return's mean, median and IQM with 95 % stratified bootstrap
intervals, sample-efficiency curves, probabilities of improvement, performance profiles and
(for ANF runs) input connectivity; across environments the same on normalised scores. Written as ``report.md``,
``report.json`` and PNG figures.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from lightning_sparse_rl.persistence.run_files import atomic_write_bytes
from lightning_sparse_rl.report.document import ReportDocument, ReportSettings, curve_json
from lightning_sparse_rl.report.figures import plot_bands, plot_intervals
from lightning_sparse_rl.report.normalization import reference_scores
from lightning_sparse_rl.report.runs import AgentResult, common_steps, returns_at
from lightning_sparse_rl.report.statistics import aggregate_estimates, mean_curves
from lightning_sparse_rl.sweep.layout import file_name_part


def _by(agents: Sequence[AgentResult], key: str) -> dict[str, list[AgentResult]]:
    groups: dict[str, list[AgentResult]] = {}
    for agent in agents:
        groups.setdefault(getattr(agent, key), []).append(agent)
    return groups


def _environment(report: ReportDocument, env_id: str, agents: Sequence[AgentResult]) -> dict[str, Any]:
    settings, lines = report.settings, report.lines
    configurations = _by(agents, "configuration")
    steps = common_steps(agent.steps for agent in agents)
    lines += [f"## {env_id}", ""]
    result: dict[str, Any] = {"configurations": {name: len(group) for name, group in configurations.items()}}
    if len(steps) == 0:
        lines += ["No evaluation step is common to all runs yet.", ""]
        return result
    final = int(steps[-1])
    chosen = [s for s in settings.steps if s in steps and s != final]
    missing = [s for s in settings.steps if s not in steps]
    result["final_step"] = final
    result["at_steps"] = {}
    for step in [final, *chosen]:
        heading = "the last step every run reached" if step == final else "chosen"
        lines += [f"### Evaluation return at {step:,} training steps ({heading})", ""]
        scores = {name: returns_at(group, np.array([step])) for name, group in configurations.items()}
        result["at_steps"][str(step)] = report.aggregate_table(scores, 0, "runs")
    if missing:
        lines += [f"Not reached by every run: {', '.join(f'{s:,}' for s in missing)} steps.", ""]
    final_scores = {name: returns_at(group, np.array([final])) for name, group in configurations.items()}
    name = file_name_part(env_id)
    result["last_evaluations"] = _last_evaluations(report, env_id, configurations, steps)
    if len(configurations) > 1:
        lines += [f"### Probability of improvement at {final:,} steps", ""]
        result["probability_of_improvement"] = report.improvement(
            final_scores, f"probability_of_improvement_{name}.png", f"{env_id}, {final:,} steps"
        )
    curves = {}
    for configuration, group in configurations.items():
        own = common_steps(agent.steps for agent in group)
        curves[configuration] = (own, returns_at(group, own)[:, None, :])
    result["sample_efficiency"] = report.curves(
        curves, f"sample_efficiency_{name}.png", "evaluation return (IQM)", f"{env_id}: IQM and 95% interval"
    )
    result["performance_profile"] = report.profile(
        final_scores, f"performance_profile_{name}.png", "evaluation return τ", f"{env_id}, {final:,} steps"
    )
    lines += [
        f"Figures: `sample_efficiency_{name}.png` (IQM over runs at each evaluation, 95 % interval), "
        f"`performance_profile_{name}.png` (fraction of runs above each return at {final:,} steps)"
        + (f", `probability_of_improvement_{name}.png`." if len(configurations) > 1 else "."),
        "",
    ]
    connectivity = _connectivity(report, env_id, configurations, final)
    if connectivity:
        result["connectivity"] = connectivity
    return result


def _last_evaluations(
    report: ReportDocument, env_id: str, configurations: Mapping[str, Sequence[AgentResult]], steps: np.ndarray
) -> dict[str, Any]:
    """The seed papers' metric: each run's return averaged over the last N evaluations that every run has.

    Reported as mean ± sample standard deviation over runs (the papers' form), with each run's value, then the
    usual mean / median / IQM with bootstrap intervals and P(X > Y) of the same per-run averages.
    """
    window = steps[-report.settings.last_evaluations :]
    averages = {name: returns_at(group, window).mean(axis=1) for name, group in configurations.items()}
    seeds = {name: [agent.seed for agent in group] for name, group in configurations.items()}
    count = f"{len(window)} evaluations" + (
        f" (of the {report.settings.last_evaluations} asked for: no more are common to every run)"
        if len(window) < report.settings.last_evaluations
        else ""
    )
    report.lines += [
        f"### Average of the last {count}, {int(window[0]):,} to {int(window[-1]):,} steps",
        "",
        "Each run's evaluation returns averaged over these steps (the metric of the DS-TD3 and ANF papers' tables), "
        "then mean ± sample standard deviation (n − 1) over runs, and the same per-run averages with intervals.",
        "",
    ]
    spreads = {name: float(np.std(v, ddof=1)) if len(v) > 1 else None for name, v in averages.items()}
    rows = [
        [
            name,
            str(len(values)),
            f"{values.mean():.0f} ± {spreads[name]:.0f}" if spreads[name] is not None else f"{values.mean():.0f}",
            ", ".join(f"{seed}: {value:.0f}" for seed, value in zip(seeds[name], values, strict=True)),
        ]
        for name, values in averages.items()
    ]
    report.table(["configuration", "runs", "mean ± sd", "per seed"], rows)
    result: dict[str, Any] = {
        "steps": window.tolist(),
        "per_run": {name: dict(zip(map(str, seeds[name]), v.tolist(), strict=True)) for name, v in averages.items()},
        "mean": {name: float(values.mean()) for name, values in averages.items()},
        "sd": spreads,
    }
    scores = {name: values[:, None] for name, values in averages.items()}
    result["aggregates"] = report.aggregate_table(scores, 0, "runs")
    if len(scores) > 1:
        figure = f"probability_of_improvement_last_{file_name_part(env_id)}.png"
        result["probability_of_improvement"] = report.improvement(scores, figure, f"{env_id}, last {count}")
        report.lines += [f"Figure: `{figure}`.", ""]
    return result


def _connectivity(
    report: ReportDocument, env_id: str, configurations: Mapping[str, Sequence[AgentResult]], final: int
) -> dict[str, Any]:
    """The actor's connections per real and noise input: a table at step ``final`` and curves over training."""
    with_counts = {name: group for name, group in configurations.items() if all(a.connectivity for a in group)}
    if not with_counts:
        return {}
    curves, final_rows, result = {}, [], {}
    for configuration, group in with_counts.items():
        steps = group[0].connectivity_steps
        for agent in group[1:]:
            steps = np.intersect1d(steps, agent.connectivity_steps)
        for kind in ("real", "noise"):
            values = np.stack([a.connectivity[kind][np.searchsorted(a.connectivity_steps, steps)] for a in group])
            if not np.isnan(values).all():
                curves[f"{configuration}, {kind}"] = (steps, values[:, None, :])
    means = mean_curves({key: c for key, (_, c) in curves.items()}, report.settings.curve_reps, report.settings.seed)
    for key, (steps, _) in curves.items():
        value, interval = means[key]
        result[key] = curve_json(steps, value, interval)
        if final in steps:
            i = int(np.searchsorted(steps, final))
            final_rows.append([key, f"{value[i]:.1f} [{interval[0, i]:.1f}, {interval[1, i]:.1f}]"])
    name = file_name_part(env_id)
    report.lines += [f"### Actor connections per input feature at {final:,} steps", ""]
    report.table(["configuration, inputs", "mean [95 % interval]"], final_rows)
    plot_bands(
        {key: (steps, *means[key]) for key, (steps, _) in curves.items()},
        report.figure(f"connectivity_{name}.png"),
        xlabel="training steps",
        ylabel="active connections per input",
        title=f"{env_id}: actor connections per input (mean, 95% CI)",
    )
    report.lines += [f"Figure: `connectivity_{name}.png`.", ""]
    return result


def _normalized(report: ReportDocument, by_env: Mapping[str, Sequence[AgentResult]]) -> dict[str, Any]:
    """Across environments with reference scores: the configurations that ran in all of them, equally often."""
    references = {env: reference_scores(env, report.settings.references) for env in by_env}
    envs = [env for env, scores in references.items() if scores is not None]
    if len(envs) < 2:
        return {}
    groups = {env: _by(by_env[env], "configuration") for env in envs}
    shared = [c for c in groups[envs[0]] if all(c in groups[env] for env in envs)]
    shared = [c for c in shared if len({len(groups[env][c]) for env in envs}) == 1]
    if not shared:
        return {}
    envs = [env for env in envs if len(common_steps(agent.steps for agent in by_env[env]))]
    if len(envs) < 2:
        return {}
    steps = common_steps(agent.steps for env in envs for c in shared for agent in groups[env][c])
    finals = {env: int(common_steps(agent.steps for agent in by_env[env])[-1]) for env in envs}
    scores, curves = {}, {}
    for configuration in shared:
        columns, curve_columns = [], []
        for env in envs:
            group = sorted(groups[env][configuration], key=lambda agent: agent.seed)
            columns.append(references[env].normalize(returns_at(group, np.array([finals[env]]))[:, 0]))
            if len(steps):
                curve_columns.append(references[env].normalize(returns_at(group, steps)))
        scores[configuration] = np.stack(columns, axis=1)
        if curve_columns:
            curves[configuration] = (steps, np.stack(curve_columns, axis=1))
    lines = report.lines
    lines += [
        "## All environments, normalised",
        "",
        "Score = (return − random) / (reference − random), 0 a random policy, 1 the reference; each environment at "
        "its last common step ("
        + ", ".join(f"{env} {finals[env]:,}" for env in envs)
        + "). References: "
        + "; ".join(
            f"{env}: {references[env].random:g} / {references[env].reference:g} ({references[env].source})"
            for env in envs
        )
        + ".",
        "",
    ]
    result: dict[str, Any] = {"environments": envs, "final_steps": finals}
    estimates = aggregate_estimates(scores, report.settings.reps, report.settings.seed)
    result["aggregates"] = report.aggregate_table(scores, 3, "runs×envs", estimates)
    if len(shared) > 1:
        lines += ["### Probability of improvement (averaged over environments)", ""]
        result["probability_of_improvement"] = report.improvement(
            scores, "probability_of_improvement_normalized.png", "all environments"
        )
    plot_intervals(
        estimates,
        report.figure("aggregates_normalized.png"),
        xlabel="normalised score",
        title="All environments: aggregates with 95% stratified bootstrap intervals",
    )
    result["performance_profile"] = report.profile(
        scores, "performance_profile_normalized.png", "normalised score τ", "All environments"
    )
    if curves:
        result["sample_efficiency"] = report.curves(
            curves, "sample_efficiency_normalized.png", "normalised score (IQM)", "All environments: IQM, 95% interval"
        )
    lines += [
        "Figures: `aggregates_normalized.png`, `performance_profile_normalized.png`"
        + (", `sample_efficiency_normalized.png`" if curves else "")
        + (", `probability_of_improvement_normalized.png`." if len(shared) > 1 else "."),
        "",
    ]
    return result


def build_report(agents: Sequence[AgentResult], out_dir: str | Path, settings: ReportSettings) -> dict[str, Any]:
    """Write ``report.md``, ``report.json`` and the figures of ``agents`` to ``out_dir``; returns the JSON content."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = ReportDocument(out, settings)
    report.lines += ["# Report", "", *[f"{line}  " for line in settings.header], ""]
    report.lines += [
        "Evaluation return: the mean undiscounted return of each agent's deterministic evaluation episodes. One run "
        "= one agent (one seed). Intervals: 95 % stratified bootstrap (rliable; "
        f"{settings.reps:,} replications for the mean, median and IQM, {settings.curve_reps:,} for curves, "
        f"profiles and probabilities of improvement; seed {settings.seed} and the entry's name). IQM: the mean "
        "of the middle 50 % of runs. P(X > Y): the probability that a run of X scores higher than a run of Y. "
        "Median: over runs within an environment; across environments rliable's median over environments of the "
        "mean over runs.",
        "",
    ]
    unfinished = settings.unfinished
    if unfinished:
        report.lines += ["Trials still running or stopped early: " + "; ".join(unfinished) + ".", ""]
    by_env = _by(agents, "env_id")
    content: dict[str, Any] = {"settings": {**asdict(settings), "references": None}, "environments": {}}
    for env_id, group in by_env.items():
        content["environments"][env_id] = _environment(report, env_id, group)
    normalized = _normalized(report, by_env)
    if normalized:
        content["normalized"] = normalized
    atomic_write_bytes(out / "report.md", "\n".join(report.lines).encode())
    atomic_write_bytes(out / "report.json", (json.dumps(content, indent=1) + "\n").encode())
    content["files"] = [str(out / "report.md"), str(out / "report.json"), *map(str, report.figures)]
    return content
