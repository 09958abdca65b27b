"""Where one SAC training step's time goes, and what Lightning adds on top of a plain loop.

Measures, in one process on the same networks and replay buffer (HalfCheetah-v5, batch 100, 2x256):

1. ``lsrl``-style ``Trainer.fit`` throughput (steady state, evaluation excluded);
2. a plain PyTorch loop doing the same work (env step, act, store, sample, SAC update);
3. the plain loop's time per component.

Usage: ``python benchmarks/step_breakdown.py [--steps 3000] [--threads 1] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import lightning as L
import torch
import torch.nn.functional as F
from fit_timing import fit_steps_per_s

from lightning_sparse_rl import SAC, EnvDataModule
from lightning_sparse_rl.algorithms.sac import sac_td_target
from lightning_sparse_rl.networks import polyak_update


def lightning_steps_per_s(steps: int, warmup: int) -> float:
    """Env steps/s of a real ``Trainer.fit`` over ``steps`` training steps (after ``warmup`` of them)."""
    L.seed_everything(0, verbose=False)
    dm = EnvDataModule("HalfCheetah-v5", seed=0, start_timesteps=1000, max_timesteps=warmup + steps, eval_freq=10**9)
    return fit_steps_per_s(SAC(dm.env_spec), dm, warmup, steps)


def plain_loop(steps: int, warmup: int) -> tuple[float, dict[str, float]]:
    """Env steps/s of a hand-written loop, and milliseconds per step of each of its parts."""
    torch.manual_seed(0)
    dm = EnvDataModule("HalfCheetah-v5", seed=0, start_timesteps=1000)
    dm.setup("fit")
    dm.warm_up()
    model = SAC(dm.env_spec)
    actor_opt = torch.optim.Adam(model.actor.parameters(), lr=1e-3, weight_decay=2e-4)
    critic_opt = torch.optim.Adam(model.critic.parameters(), lr=1e-3, weight_decay=2e-4)
    env, buffer = dm.train_env, dm.buffer
    obs, _ = env.reset(seed=0)
    parts: dict[str, float] = defaultdict(float)

    def timed(name: str, start: float) -> float:
        now = time.perf_counter()
        parts[name] += now - start
        return now

    for i in range(warmup + steps):
        if i == warmup:
            parts.clear()
            begin = time.perf_counter()
        t = time.perf_counter()
        action = model.act(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0), deterministic=False)[0].numpy()
        t = timed("act (policy sample, 1 obs)", t)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        t = timed("env.step (MuJoCo)", t)
        buffer.add(obs, action, float(reward), next_obs, bool(terminated))
        obs = env.reset()[0] if terminated or truncated else next_obs
        t = timed("buffer.add + reset", t)
        batch = buffer.sample(100)
        t = timed("buffer.sample", t)
        with torch.no_grad():
            next_action, next_log_prob = model.actor.sample(model.observe(batch.next_obs))
            nq1, nq2 = model.critic_target(model.observe(batch.next_obs), next_action)
            target = sac_td_target(batch.reward, batch.terminated, nq1, nq2, next_log_prob, 0.2, 0.99)
        t = timed("TD target (no grad)", t)
        q1, q2 = model.critic(model.observe(batch.obs), batch.action)
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        t = timed("critic forward + backward", t)
        critic_opt.step()
        t = timed("critic Adam step", t)
        new_action, log_prob = model.actor.sample(model.observe(batch.obs))
        pq1, pq2 = model.critic(model.observe(batch.obs), new_action)
        actor_loss = (0.2 * log_prob - torch.min(pq1, pq2)).mean()
        actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        t = timed("actor forward + backward", t)
        actor_opt.step()
        t = timed("actor Adam step", t)
        polyak_update(model.critic_target, model.critic, 0.005)
        timed("Polyak update", t)
    total = time.perf_counter() - begin
    return steps / total, {k: 1000 * v / steps for k, v in parts.items()}


def main() -> None:
    """Run both measurements and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300, help="training steps before timing starts")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    plain, parts = plain_loop(args.steps, args.warmup)
    lightning = lightning_steps_per_s(args.steps, args.warmup)
    print(f"\nSAC, HalfCheetah-v5, batch 100, 2x256, {args.threads} thread(s), {args.steps} timed steps")
    print(f"{'plain PyTorch loop':<32}{plain:8.1f} env steps/s   {1000 / plain:6.2f} ms/step")
    print(f"{'lightning-sparse-rl Trainer.fit':<32}{lightning:8.1f} env steps/s   {1000 / lightning:6.2f} ms/step")
    print(f"{'ratio (ours / plain)':<32}{lightning / plain:8.3f}")
    print("\nplain loop, ms per step:")
    for name, ms in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<30}{ms:7.3f}  ({100 * ms * plain / 1000:4.1f} %)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "plain": plain, "lightning": lightning, "parts_ms": parts}, f, indent=2)


if __name__ == "__main__":
    main()
