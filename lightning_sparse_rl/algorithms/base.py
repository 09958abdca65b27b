"""What SAC and TD3 share as LightningModules: manual optimisation, counters, evaluation logging."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.autograd.graph import increment_version
from torchmetrics.aggregation import MeanMetric, RunningMean
from typing_extensions import override

from lightning_sparse_rl.algorithms.n_step import n_step_transition
from lightning_sparse_rl.data.envs import EnvSpec
from lightning_sparse_rl.data.noise_features import InputFeatures
from lightning_sparse_rl.floating_point import apply_configured, cpu_bf16_instructions
from lightning_sparse_rl.networks import ReadsObservations, polyak_update
from lightning_sparse_rl.run_position import checkpoint_directory, training_steps
from lightning_sparse_rl.seeding import agent_streams, agent_suffix, stream_seed
from lightning_sparse_rl.sparse import MaskAdam, SparseNetwork, TargetBudget, restore_masks
from lightning_sparse_rl.types import EvalEpisode, TrainBatch, Transition, TransitionWindow
from lightning_sparse_rl.validation import MAX_SEED, UserInputError, check_in_range, check_positive, check_seeds

OptimizerName = Literal["adam", "maskadam", "sgd"]
OPTIMIZERS: tuple[str, ...] = ("adam", "maskadam", "sgd")
#: ``torch.compile`` modes; ``reduce-overhead`` uses CUDA graphs on a GPU.
COMPILE_MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


#: Training episodes in the progress bar's running mean return (``ret``).
RECENT_EPISODES = 10
#: Off the CPU, losses are checked for NaN/Inf on the device and read by the host once per this many gradient
#: steps (a read per optimizer step would stall the device 2-3 times per update).
DEVICE_FINITE_CHECK_STEPS = 100


def sum_of_agent_means(per_sample: Tensor) -> Tensor:
    """A population's loss: per-sample losses ``(K, B)`` → ``Σ_k mean_b``, a scalar.

    The sum over agents keeps each agent's gradient exactly that of its own mean loss (agents share no
    parameter), so K agents train as K separate runs would.
    """
    return per_sample.mean(dim=1).sum()


class OffPolicyAlgorithm(LightningModule):
    r"""Base class of the off-policy algorithms; subclasses implement :meth:`update` and :meth:`act`.

    ``automatic_optimization`` is off: each :class:`TrainBatch` holds ``updates_per_step``
    minibatches and :meth:`update` runs one full gradient update (all networks) per minibatch.
    ``gradient_steps`` counts those updates (Lightning's ``global_step`` counts optimizer steps).

    A module trains a population of ``K = len(seeds)`` independent agents at once (``K = 1``: one agent):
    every network is member-batched (:class:`~lightning_sparse_rl.sparse.MemberLinear`), every batch has
    a leading agent dimension, and each loss is the **sum** of the agents' losses, so each agent's
    gradients are exactly its own. Agent ``k``'s initial weights, policy noise and noise features come
    from its own streams of ``seeds[k]`` (:mod:`lightning_sparse_rl.seeding`).

    Every network reads :meth:`observe`\ ``(obs)``, not ``obs``: the stored observation with this
    call's own noise features (``env_spec.network_noise``) and the current input permutation
    (:class:`~lightning_sparse_rl.data.noise_features.InputFeatures`, ``self.input_features``).

    Args:
        env_spec: observation/action sizes and action bounds; ``EnvDataModule(...).env_spec``. Required
            (``None`` only as a placeholder: ``lsrl fit`` links it from the DataModule).
        lr: learning rate of every optimizer.
        weight_decay: L2 weight decay of the actor and critic optimizers (original: 2e-4).
        discount: γ.
        tau: Polyak rate of the target networks.
        optimizer: ``adam``, ``maskadam`` (Adam whose moments are cleared where connections are pruned
            or regrown, see :class:`~lightning_sparse_rl.sparse.MaskAdam`) or ``sgd`` (momentum 0.9), all
            with ``weight_decay``.
        compile: ``torch.compile`` the losses (forward and backward passes of every network) when
            training starts. Randomness stays eager PyTorch's (same random streams as without it).
            Measured in ``benchmarks/throughput.py``: slower on CPU (see README), so off by default.
        compile_mode: ``torch.compile`` mode (:data:`COMPILE_MODES`; ``None``: the default mode);
            ``reduce-overhead`` captures CUDA graphs on a GPU.
        agent_seeds: the agents' seeds (``lsrl fit`` links them from the DataModule's ``seeds``); ``None``: one
            agent seeded with ``torch.initial_seed()`` (set by ``seed_everything``).

    """

    def __init__(
        self,
        env_spec: EnvSpec | None,
        lr: float,
        weight_decay: float,
        discount: float,
        tau: float,
        optimizer: OptimizerName,
        compile: bool = False,
        compile_mode: str | None = None,
        agent_seeds: list[int] | None = None,
    ) -> None:
        super().__init__()
        if env_spec is None:
            raise ValueError(
                "env_spec is required: pass EnvDataModule(...).env_spec (lsrl fit links it from the DataModule)"
            )
        check_positive("lr", lr)
        check_in_range("weight_decay", weight_decay, 0.0, float("inf"))
        check_in_range("discount", discount, 0.0, 1.0, high_inclusive=True)
        check_in_range("tau", tau, 0.0, 1.0, high_inclusive=True)
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={optimizer!r} must be one of {OPTIMIZERS}")
        if compile_mode is not None and compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode={compile_mode!r} must be None or one of {COMPILE_MODES}")
        if agent_seeds is not None:
            check_seeds(agent_seeds)
        self.automatic_optimization = False
        self.env_spec = env_spec
        seeds = agent_seeds if agent_seeds is not None else [torch.initial_seed() % MAX_SEED]
        self.seeds: tuple[int, ...] = tuple(seeds)
        self.input_features = InputFeatures(
            env_spec.observation_dim,
            env_spec.real_dim,
            env_spec.network_noise,
            [stream_seed(seed, "network_noise") for seed in self.seeds],
        )
        self.policy_streams = agent_streams(self.seeds, "policy")
        self.gradient_steps = 0
        self.target_budget = TargetBudget()  # keeps unmasked targets as sparse as their networks (no state to save)
        self.eval_return = MeanMetric()  # over an evaluation's episodes and agents
        self.eval_length = MeanMetric()
        self.eval_agent_returns = nn.ModuleList(MeanMetric() for _ in self.seeds)  # each agent's, K > 1
        self.eval_agent_lengths = nn.ModuleList(MeanMetric() for _ in self.seeds)
        self.recent_return = RunningMean(window=RECENT_EPISODES)  # of training episodes, for the progress bar
        self._last_losses: dict[str, Tensor] = {}
        self._all_finite: Tensor | None = None  # off the CPU: whether every loss since the last check was finite
        self._finite_checked_at = 0  # gradient step of the last such check

    @property
    def agents(self) -> int:
        """``K``, the number of agents trained together."""
        return len(self.seeds)

    def init_generators(self) -> list[torch.Generator]:
        """Fresh CPU generators of each agent's ``init`` stream (for the networks' initial weights)."""
        return [stream.generator("cpu") for stream in agent_streams(self.seeds, "init")]

    def read_inputs_here(self, *networks: ReadsObservations) -> None:
        """Make ``networks`` read through :attr:`input_features` and draw from each agent's ``policy`` stream.

        Subclasses call it once their networks (targets included) exist. Each network call then draws its
        own noise features (docs/original_code.md §5.3), as in the original code's forward passes.
        """
        for network in networks:
            network.read_through(self.input_features.__call__, self.policy_streams)  # a reference, not a submodule

    def observe(self, obs: Tensor) -> Tensor:
        """What the networks read for stored observations ``(K, B, observation_dim)``: ``(K, B, input_dim)``.

        Each call draws fresh noise features.
        """
        return self.input_features(obs)

    def update_target(self, target: nn.Module, online: nn.Module) -> None:
        """Polyak-average ``online`` into ``target`` at rate ``tau``, keeping the target as sparse as ``online``."""
        polyak_update(target, online, self.hparams.tau, self.target_budget)

    # ----------------------------------------------------------------------------- for subclasses
    def update(self, batch: Transition) -> dict[str, Tensor]:
        """One gradient update of all networks on ``batch``; returns detached losses by name (means over agents)."""
        raise NotImplementedError

    def act(self, obs: Tensor, deterministic: bool) -> Tensor:
        """Actions ``(K, B, action_dim)`` in env units for ``obs`` ``(K, B, obs_dim)``; no gradient."""
        raise NotImplementedError

    def network_loss(self, family: str, batch: Transition) -> Tensor:
        """The loss that trains the networks of ``family`` (``actor`` or ``critic``) on ``batch``, summed over agents.

        Used by RigL growth for the dense gradient of the current batch.
        """
        raise NotImplementedError

    def sparse_networks(self) -> list[SparseNetwork]:
        """The networks that sparsity callbacks may mask, with their target networks."""
        raise NotImplementedError

    def make_optimizer(
        self, params: Iterable[nn.Parameter], weight_decay: float | None = None
    ) -> torch.optim.Optimizer:
        """The configured optimizer (``hparams.optimizer``) over ``params`` at ``hparams.lr``."""
        wd = self.hparams.weight_decay if weight_decay is None else weight_decay
        if self.hparams.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.hparams.lr, momentum=0.9, weight_decay=wd)
        # The fused kernel is about 2x faster than the default one on CPU, and 7x faster on layers with many
        # zero moments (masked layers): the unfused path's sqrt is slow on zeros.
        adam = MaskAdam if self.hparams.optimizer == "maskadam" else torch.optim.Adam
        return adam(params, lr=self.hparams.lr, weight_decay=wd, fused=True)

    @override
    def optimizer_step(self, optimizer: Any, loss: Tensor, network: str) -> None:
        """``zero_grad → manual_backward(loss) → step`` on one Lightning-wrapped optimizer.

        The backward pass computes gradients of ``optimizer``'s parameters only: the actor's loss flows
        through the critic, but the critic's weight gradients (a third of that backward pass) are
        not computed, as nothing would use them.

        On the CPU the loss is checked before the step; on another device the check stays on the device and
        :meth:`training_step` reads it every :data:`DEVICE_FINITE_CHECK_STEPS` gradient steps.

        Raises:
            FloatingPointError: on the CPU, ``loss`` (of ``network``) is NaN or infinite. Before raising, the
                state is saved as ``last_finite.ckpt`` in the run's checkpoint folder: no weight has been
                touched by a non-finite loss (earlier optimizer steps of this gradient step may have run).

        """
        finite = torch.isfinite(loss)
        if loss.device.type == "cpu":
            if not finite:
                self._stop_on_non_finite_loss(network, float(loss))
        else:
            self._all_finite = finite if self._all_finite is None else self._all_finite & finite
        optimizer.zero_grad(set_to_none=True)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        self.manual_backward(loss, inputs=params)
        optimizer.step()
        # Fused optimizers write the parameters without marking them written; masked layers zero their
        # inactive weights at the next read after a write (lightning_sparse_rl.sparse.masked_linear).
        increment_version(params)

    def _stop_on_non_finite_loss(self, network: str, value: float) -> None:
        trainer = self.trainer
        path = checkpoint_directory(trainer) / "last_finite.ckpt"
        trainer.save_checkpoint(path)
        raise FloatingPointError(
            f"the {network} loss is {value} at training step {training_steps(trainer)} (gradient step "
            f"{self.gradient_steps + 1}); training stopped before this optimizer step, with the state saved in {path}. "
            "Try a lower lr, or check the env's rewards and observations for NaN/Inf."
        )

    def _check_finite_on_device(self) -> None:
        """Raise if a loss since the last check was NaN/Inf (off the CPU: one host read per check)."""
        if self._all_finite is None or self.gradient_steps - self._finite_checked_at < DEVICE_FINITE_CHECK_STEPS:
            return
        first = self._finite_checked_at + 1
        self._finite_checked_at = self.gradient_steps
        if not bool(self._all_finite):
            raise FloatingPointError(
                f"a loss was NaN or infinite between gradient steps {first} and {self.gradient_steps} (losses are "
                f"checked on the device every {DEVICE_FINITE_CHECK_STEPS} gradient steps, so the weights may have "
                "been updated with it): training stopped. Resume from the run's last.ckpt with a lower lr, or check "
                "the env's rewards and observations for NaN/Inf."
            )
        self._all_finite = None

    def compile_losses(self) -> None:
        """Replace ``critic_loss`` and ``actor_loss`` by their ``torch.compile`` versions (``compile: true``)."""
        import torch._inductor.config as inductor_config

        # Eager random number generation inside compiled graphs: the same streams as without compiling,
        # so seeds, resumes and comparisons with eager runs hold.
        inductor_config.fallback_random = True
        for name in ("critic_loss", "actor_loss"):
            setattr(self, name, torch.compile(getattr(self, name), mode=self.hparams.compile_mode))

    # ----------------------------------------------------------------------------- Lightning hooks
    @override
    def setup(self, stage: str) -> None:
        """Flush denormals on the threads that will fit; refuse a DataModule with another number of agents."""
        apply_configured()
        try:
            trainer = self.trainer
        except RuntimeError:  # not attached to a Trainer (setup called by hand)
            trainer = None
        seeds = getattr(trainer.datamodule, "seeds", None) if isinstance(trainer, Trainer) else None  # not Fabric's
        if seeds is not None and len(seeds) != self.agents:
            raise UserInputError(
                f"the DataModule steps {len(seeds)} agents (seeds {list(seeds)}) but the model has {self.agents} "
                f"(agent_seeds {list(self.seeds)}): build the model with agent_seeds=data.seeds"
            )

    @override
    def on_fit_start(self) -> None:
        """Warn when bf16 products will run on a CPU without bf16 instructions (slower than float32 there)."""
        if str(self.trainer.precision).startswith("bf16") and self.device.type == "cpu":
            if cpu_bf16_instructions() == []:
                rank_zero_warn(
                    f"precision {self.trainer.precision} on a CPU without bf16 instructions (AVX-512 BF16 or "
                    "AMX-BF16): its bf16 products are emulated, measured 4-5x slower than 32-true on an AVX2 AMD "
                    "EPYC; use --trainer.precision 32-true here, bf16-mixed where the CPU or GPU has them"
                )

    @override
    def on_train_start(self) -> None:
        """Compile the losses if asked (after the sparsity callbacks have registered their masks)."""
        if self.hparams.compile and "critic_loss" not in self.__dict__:
            self.compile_losses()

    def transition(self, minibatch: Transition | TransitionWindow) -> Transition:
        """A minibatch as the losses read it: a window of ``n`` steps becomes ``n``-step transitions (this γ)."""
        if isinstance(minibatch, TransitionWindow):
            return n_step_transition(minibatch, self.hparams.discount)
        return minibatch

    @override
    def training_step(self, batch: TrainBatch, batch_idx: int) -> None:
        """Run ``updates_per_step`` gradient updates; log losses every ``log_every_n_steps`` env steps."""
        for minibatch in batch.minibatches:
            self._last_losses = self.update(self.transition(minibatch))
            self.gradient_steps += 1
        self._check_finite_on_device()
        finished = [(seed, e) for seed, e in zip(self.seeds, batch.episodes, strict=True) if e is not None]
        if finished:
            # Straight to the loggers: ``self.log`` would repeat the value at every later flush.
            # ``step`` follows Lightning's convention (batches finished before this one).
            metrics: dict[str, float] = {}
            for seed, episode in finished:
                suffix = agent_suffix(self.seeds, seed)
                metrics[f"train/episode_return{suffix}"] = episode.episode_return
                metrics[f"train/episode_length{suffix}"] = episode.length
                self.recent_return.update(episode.episode_return)
            for logger in self.loggers:
                logger.log_metrics(metrics, step=batch.train_step - 1)
            self.log("ret", self.recent_return.compute(), prog_bar=True, logger=False)
        if batch.train_step % self.trainer.log_every_n_steps == 0:
            self.log_dict({f"train/{k}": v for k, v in self._last_losses.items()})
            self.log("train/gradient_steps", float(self.gradient_steps))

    @override
    def validation_step(self, batch: EvalEpisode, batch_idx: int) -> None:
        """Add one evaluation episode of every agent to the means over the evaluation.

        ``eval/return`` and ``eval/episode_length`` average over episodes and agents (``ModelCheckpoint``
        monitors the return); with ``K > 1`` each agent's means are logged as ``eval/return/seed_S`` and
        ``eval/episode_length/seed_S``.
        """
        self.eval_return.update(torch.tensor(batch.returns, dtype=torch.float64))
        self.eval_length.update(torch.tensor(batch.lengths, dtype=torch.float64))
        self.log("eval/return", self.eval_return, on_epoch=True, batch_size=1)
        self.log("eval/episode_length", self.eval_length, on_epoch=True, batch_size=1)
        if self.agents > 1:
            for k, seed in enumerate(self.seeds):
                self.eval_agent_returns[k].update(batch.returns[k])
                self.eval_agent_lengths[k].update(float(batch.lengths[k]))
                self.log(f"eval/return/seed_{seed}", self.eval_agent_returns[k], on_epoch=True, batch_size=1)
                self.log(f"eval/episode_length/seed_{seed}", self.eval_agent_lengths[k], on_epoch=True, batch_size=1)

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the gradient-step counter and the agents' policy streams."""
        checkpoint["gradient_steps"] = self.gradient_steps
        checkpoint["policy_streams"] = [stream.state_dict() for stream in self.policy_streams]

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the gradient-step counter and the policy streams; register the checkpoint's masks first."""
        restore_masks(self, checkpoint["state_dict"])
        self.gradient_steps = checkpoint["gradient_steps"]
        for stream, saved in zip(self.policy_streams, checkpoint["policy_streams"], strict=True):
            stream.load_state_dict(saved)
