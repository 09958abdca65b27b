"""The evaluation returns (and input connectivity) of a sweep's trials or of run folders, one record per agent."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from lightning_sparse_rl.persistence.run_files import EVALUATION_COLUMNS, read_csv_columns
from lightning_sparse_rl.sweep.layout import TRIALS_FILE, is_sweep_folder, trial_run_folder
from lightning_sparse_rl.validation import UserInputError


@dataclass
class AgentResult:
    """One agent's evaluations: one seed of one run.

    Attributes:
        configuration: what the agent was trained with (a sweep's grid point, or the run's name).
        env_id: the Gymnasium id.
        seed: the agent's seed.
        run_dir: the run folder.
        steps: training env steps of the evaluations ``(T,)``.
        returns: mean evaluation return at each of them ``(T,)``.
        connectivity: the actor's mean connections per real and per noise input at ``connectivity_steps``,
            ``{"real": (C,), "noise": (C,)}`` (runs with noise features and ``InputConnectivityCallback``), else
            ``None``.
        connectivity_steps: ``(C,)``.

    """

    configuration: str
    env_id: str
    seed: int
    run_dir: Path
    steps: np.ndarray
    returns: np.ndarray
    connectivity: dict[str, np.ndarray] | None = None
    connectivity_steps: np.ndarray | None = None


def _agents_of_run(run_dir: Path, configuration: str, env_id: str) -> list[AgentResult]:
    evaluations = read_csv_columns(run_dir / "evaluations.csv", EVALUATION_COLUMNS)
    seeds = [int(seed) for seed in dict.fromkeys(evaluations["seed"].tolist())]
    per_feature = run_dir / "connectivity_per_feature.npz"
    arrays = np.load(per_feature) if per_feature.exists() else None
    agents = []
    for seed in seeds:
        rows = evaluations["seed"] == seed
        agent = AgentResult(
            configuration, env_id, seed, run_dir, evaluations["step"][rows], evaluations["return"][rows]
        )
        key = "actor" if len(seeds) == 1 else f"actor.seed_{seed}"
        if arrays is not None and key in arrays.files and arrays[key].shape[1] > int(arrays["real_features"]):
            counts, real = arrays[key].astype(float), int(arrays["real_features"])
            agent.connectivity = {"real": counts[:, :real].mean(axis=1), "noise": counts[:, real:].mean(axis=1)}
            agent.connectivity_steps = arrays["steps"]
        agents.append(agent)
    return agents


def load_sweep(sweep_dir: str | Path) -> list[AgentResult]:
    """Every agent of every trial of a sweep folder that has evaluated at least once.

    Raises:
        UserInputError: ``sweep_dir`` is not a sweep folder.

    """
    folder = Path(sweep_dir)
    if not is_sweep_folder(folder):
        raise UserInputError(f"{folder} is not a sweep folder of lsrl sweep (no {TRIALS_FILE})")
    agents = []
    for trial in json.loads((folder / TRIALS_FILE).read_text())["trials"]:
        run_dir = trial_run_folder(folder, trial["name"])
        if (run_dir / "evaluations.csv").exists():
            agents += _agents_of_run(run_dir, trial["configuration"], trial["env_id"])
    return agents


def load_run_dirs(run_dirs: Iterable[str | Path]) -> list[AgentResult]:
    """Every agent of these ``lsrl fit`` run folders; a run's configuration is its name (``runs/NAME/version_N``).

    Raises:
        UserInputError: a folder without ``evaluations.csv``.

    """
    agents = []
    for given in run_dirs:
        run_dir = Path(given)
        if not (run_dir / "evaluations.csv").exists():
            raise UserInputError(f"{run_dir} has no evaluations.csv: not a run folder of lsrl fit")
        configuration = run_dir.parent.name if run_dir.name.startswith("version_") else run_dir.name
        config_file = run_dir / "config.yaml"
        config = yaml.safe_load(config_file.read_text()) if config_file.exists() else {}
        env_id = str(((config or {}).get("data") or {}).get("env_id", "unknown env"))
        agents += _agents_of_run(run_dir, configuration, env_id)
    return agents


def load_results(paths: Sequence[str | Path]) -> list[AgentResult]:
    """The agents of one sweep folder, or of run folders (any mix of both)."""
    agents = []
    for path in map(Path, paths):
        agents += load_sweep(path) if is_sweep_folder(path) else load_run_dirs([path])
    if not agents:
        raise UserInputError(f"no evaluations yet in {', '.join(map(str, paths))}")
    seen: dict[tuple[str, str, int], Path] = {}
    for agent in agents:
        key = (agent.env_id, agent.configuration, agent.seed)
        if key in seen:
            raise UserInputError(
                f"{seen[key]} and {agent.run_dir} both hold seed {agent.seed} of {agent.configuration} on "
                f"{agent.env_id}: one run per seed (give one of them, or rename a run)"
            )
        seen[key] = agent.run_dir
    return agents


def common_steps(steps_of_runs: Iterable[np.ndarray]) -> np.ndarray:
    """The steps that every run has (each run's steps sorted)."""
    steps_of_runs = list(steps_of_runs)
    steps = steps_of_runs[0]
    for other in steps_of_runs[1:]:
        steps = np.intersect1d(steps, other)
    return steps.astype(int)


def values_at(runs: Sequence[tuple[np.ndarray, np.ndarray]], steps: np.ndarray) -> np.ndarray:
    """Each run's ``(steps, values)`` read at ``steps`` (which all of them have): ``(runs, len(steps))``."""
    return np.stack([values[np.searchsorted(run_steps, steps)] for run_steps, values in runs])


def returns_at(agents: Sequence[AgentResult], steps: np.ndarray) -> np.ndarray:
    """The agents' returns at ``steps`` (which all of them have), ``(agents, len(steps))``."""
    return values_at([(agent.steps, agent.returns) for agent in agents], steps)


def unfinished_trials(paths: Sequence[str | Path]) -> list[str]:
    """The sweep trials among ``paths`` that have not reached their ``max_timesteps``: ``NAME at N of M steps``."""
    lines = []
    for path in filter(is_sweep_folder, map(Path, paths)):
        for trial in json.loads((path / TRIALS_FILE).read_text())["trials"]:
            file = trial_run_folder(path, trial["name"]) / "evaluations.csv"
            steps = read_csv_columns(file, ["step"])["step"] if file.exists() else np.zeros(1)
            last = int(np.max(steps)) if len(steps) else 0
            if last < trial["max_timesteps"]:
                lines.append(f"{trial['name']} at {last:,} of {trial['max_timesteps']:,} steps")
    return lines


def sweep_provenance(paths: Sequence[str | Path]) -> list[str]:
    """Lines that say where the sweeps among ``paths`` ran: command, commit, machine, seeds, steps."""
    lines = []
    for path in filter(is_sweep_folder, map(Path, paths)):
        saved = json.loads((path / TRIALS_FILE).read_text())
        trials = saved["trials"]
        steps = sorted({trial["max_timesteps"] for trial in trials})
        lines.append(
            f"Sweep `{path}`: `{saved.get('command', 'lsrl sweep')}`, commit {saved.get('commit', 'unknown')}, "
            f"machine {saved.get('machine', 'unknown')}, {len(trials)} trials of {len(trials[0]['seeds'])} seeds "
            f"(seeds {','.join(map(str, trials[0]['seeds']))}), max_timesteps {', '.join(f'{s:,}' for s in steps)}"
        )
    return lines
