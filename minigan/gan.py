"""`GAN`: a generator and a discriminator, the training step, sampling, and its config.

One `train_step`, exactly (DESIGN.md, "The GAN step"):
  1. fake = G(z) for one noise batch z.
  2. D step: L_D = loss(D(x), real) + loss(D(fake), fake) (a sum of two means), plus the
     gradient penalty for WGAN-GP; one optimizer step on D (then weight clipping for WGAN).
     When every layer of D maps each row on its own, D runs once on the concatenated
     batch [x; fake]: the same gradient as two passes accumulated, with half the
     matrix-product calls. Otherwise (BatchNorm in D) it runs on x and on fake in two
     passes, as pytorch/examples' dcgan does, so each batch is normalised by its own
     statistics.
  3. G step, with the *updated* D and the same fake: L_G from D(fake); backpropagate
     through D without D's parameter gradients (`param_grads=False`), then through G;
     one optimizer step on G.
With `d_steps=k`, steps 1-2 run k times (fresh z each time) and step 3 uses the last fake.
With `pack=m` (PacGAN), D sees m consecutive samples of a batch concatenated along the
last (channel / feature) axis.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .averaging import recompute_batch_norm_statistics, shadow_copy, update_average
from .backend import Backend
from .layers import positive_int
from .model import Sequential, evaluating
from .objectives import OBJECTIVES
from .optim import Optimizer, optimizer_from_config
from .penalty import check_supported, gradient_penalty
from .trainable import Trainable, check_optimizers, check_same_backend, data_batch


STATISTICS_SAMPLES = 1024  # noise vectors that a weight average's BatchNorm statistics are computed from
STATISTICS_SEED = 1024  # their generator's seed: any fixed one; neither the run's seed nor its stream


def statistics_noise(latent_dim: int) -> np.ndarray:
    """The fixed noise (STATISTICS_SAMPLES, latent_dim) of a weight average's BatchNorm
    statistics, drawn from its own generator: sampling never moves the training stream."""
    return np.random.default_rng(STATISTICS_SEED).standard_normal((STATISTICS_SAMPLES, latent_dim))


def recompute_generator_statistics(generator: Sequential) -> None:
    """Sets a generator's BatchNorm running statistics to those of its samples of
    `statistics_noise` (`recompute_batch_norm_statistics`): what a weight average samples with."""
    noise = generator.backend.asarray(statistics_noise(generator.input_shape[0]))  # (samples, latent)
    recompute_batch_norm_statistics(generator, noise)


class GAN(Trainable):
    """A generator/discriminator pair and their optimizers.

    Args:
        generator: maps (N, latent_dim) noise to (N, *shape) samples.
        discriminator: maps packed samples (N / pack, *shape[:-1], pack * shape[-1]) to
            (N / pack, 1) outputs; same backend and dtype. It may have k heads, (N / pack, k)
            outputs (e.g. a `Branches` layer of k networks): every loss is then the mean over
            the heads of each head's loss (not under wgan-gp, whose penalty needs one output).
        loss: "non_saturating" (default), "minimax", "lsgan", "hinge", "wgan" or "wgan-gp".
        latent_dim: noise width; defaults to the generator's input width.
        d_opt, g_opt: optimizers; default: the loss's paper optimizer (Adam(2e-4, (0.5, 0.999));
            RMSProp(5e-5) for wgan; Adam(1e-4, (0.5, 0.9)) for wgan-gp).
        d_steps: discriminator steps per generator step; default 1, or 5 for wgan / wgan-gp.
        pack: PacGAN packing degree m (default 1: no packing).
        ema_decay: with 0 < ema_decay < 1, a moving average of G's weights (`generator_ema`,
            updated after every G step) generates the samples, with BatchNorm statistics of
            its own (recomputed by `sample`); 0 (the default) turns it off.
        loss_options: the loss's own options: `label_smoothing` (non_saturating, minimax;
            one-sided, off by default), `clip_value` (wgan, 0.01), `gp_weight` (wgan-gp, 10).
    """

    stat_names = ("d_loss", "g_loss", "d_real", "d_fake")

    def __init__(self, generator: Sequential, discriminator: Sequential, loss: str = "non_saturating",
                 latent_dim: int | None = None, d_opt: Optimizer | None = None,
                 g_opt: Optimizer | None = None, d_steps: int | None = None, pack: int = 1,
                 ema_decay: float = 0.0, **loss_options: Any):
        if loss not in OBJECTIVES:
            raise ValueError(f"loss must be one of {sorted(OBJECTIVES)}, got {loss!r}")
        try:
            self.objective = OBJECTIVES[loss](**loss_options)
        except TypeError:
            raise ValueError(f"loss {loss!r} takes no options {sorted(loss_options)}") from None
        self.models = {"generator": generator, "discriminator": discriminator}
        self.backend = check_same_backend(self.models)
        self.pack = positive_int("pack", pack)
        shape = generator.output_shape
        packed = (*shape[:-1], shape[-1] * self.pack)
        if discriminator.input_shape != packed:
            raise ValueError(f"the generator makes samples of shape {shape}, so with pack={pack} the "
                             f"discriminator must read {packed}, not {discriminator.input_shape}")
        if len(discriminator.output_shape) != 1:
            raise ValueError(f"the discriminator must output one logit per input (or one per head), "
                             f"not {discriminator.output_shape}")
        if self.objective.gp_weight:
            if discriminator.output_shape != (1,):
                raise ValueError(f"the gradient penalty needs a critic with one output, not "
                                 f"{discriminator.output_shape}")
            check_supported(discriminator)
        if len(generator.input_shape) != 1:
            raise ValueError(f"the generator must read flat noise (N, latent_dim), not {generator.input_shape}")
        self.latent_dim = generator.input_shape[0] if latent_dim is None else latent_dim
        if self.latent_dim != generator.input_shape[0]:
            raise ValueError(f"latent_dim {latent_dim} != generator input width {generator.input_shape[0]}")
        self.d_steps = positive_int("d_steps", self.objective.d_steps if d_steps is None else d_steps)
        self.batches_per_step = self.d_steps
        self.generator, self.discriminator = generator, discriminator
        self.d_opt = d_opt if d_opt is not None else self.objective.make_optimizer(discriminator)
        self.g_opt = g_opt if g_opt is not None else self.objective.make_optimizer(generator)
        self.optimizers = {"g_opt": self.g_opt, "d_opt": self.d_opt}
        check_optimizers(self.optimizers, self.models)
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay!r}")
        self.ema_decay = float(ema_decay)
        if self.ema_decay:
            self.models["generator_ema"] = shadow_copy(generator)
        self.steps = 0  # completed train_step calls

    @property
    def loss(self) -> str:
        """The objective's name, e.g. "wgan-gp"."""
        return self.objective.name

    def config(self) -> dict[str, Any]:
        return {"generator": self.generator.config(), "discriminator": self.discriminator.config(),
                "loss": self.loss, "loss_options": self.objective.options(), "latent_dim": self.latent_dim,
                "d_steps": self.d_steps, "pack": self.pack, "ema_decay": self.ema_decay,
                "optimizers": {name: opt.config() for name, opt in self.optimizers.items()}}

    @classmethod
    def from_config(cls, config: dict[str, Any], backend: Backend) -> "GAN":
        generator = Sequential.from_config(config["generator"], backend)
        discriminator = Sequential.from_config(config["discriminator"], backend)
        optimizers = config["optimizers"]
        return cls(generator, discriminator, loss=config["loss"], latent_dim=config["latent_dim"],
                   d_opt=optimizer_from_config(discriminator, optimizers["d_opt"]),
                   g_opt=optimizer_from_config(generator, optimizers["g_opt"]),
                   d_steps=config["d_steps"], pack=config["pack"], ema_decay=config.get("ema_decay", 0.0),
                   **config["loss_options"])

    def noise(self, n: int) -> Any:
        """A batch of N(0, 1) noise, (n, latent_dim), from the backend's generator."""
        return self.backend.standard_normal((n, self.latent_dim))

    def sample(self, n: int, z: Any = None) -> Any:
        """Generates n samples (n, *shape) from `z` or from fresh noise, in evaluation mode,
        by the weight average when there is one, its BatchNorm statistics recomputed first
        from `statistics_noise` (the same noise every time, not the training stream)."""
        z = self.noise(n) if z is None else self.backend.asarray(z)
        generator = self.models.get("generator_ema", self.generator)
        if generator is not self.generator:
            recompute_generator_statistics(generator)
        with evaluating(generator):
            return generator.forward(z)

    def _packed(self, samples: Any) -> Any:
        """(N, *shape) -> (N / pack, *shape[:-1], pack * C): consecutive samples side by side
        along the last axis (a view for flat samples)."""
        n, shape = samples.shape[0], samples.shape[1:]
        if n % self.pack:
            raise ValueError(f"batch size {n} is not a multiple of pack={self.pack}")
        grouped = samples.reshape(n // self.pack, self.pack, *shape)  # (N / pack, pack, *shape)
        grouped = self.backend.xp.moveaxis(grouped, 1, -2)             # (N / pack, *shape[:-1], pack, C)
        return grouped.reshape(n // self.pack, *shape[:-1], self.pack * shape[-1])

    def _unpacked(self, packed: Any, shape: tuple[int, ...]) -> Any:
        """The inverse of `_packed`, for gradients: back to (N, *shape)."""
        grouped = packed.reshape(*packed.shape[:-1], self.pack, shape[-1])  # (N / pack, ..., pack, C)
        return self.backend.xp.moveaxis(grouped, -2, 1).reshape(-1, *shape)

    def _discriminator_step(self, real: Any, z: Any) -> tuple[Any, dict[str, float]]:
        D, objective = self.discriminator, self.objective
        fake = self.generator.forward(z)  # (N, *shape)
        real_in, fake_in = self._packed(real), self._packed(fake)  # (N / pack, ..., pack * C)
        if D.rows_independent:  # one pass over [real; fake]
            logits = D.forward(self.backend.xp.concatenate([real_in, fake_in]))  # (2 N / pack, 1)
            d_loss, grad, d_real, d_fake = objective.discriminator(logits, real_in.shape[0])
            D.backward(grad, input_grad=False, accumulate=False)  # overwrites D.grads
        else:  # two passes, each batch with its own statistics; gradients accumulate
            logits_real = D.forward(real_in)
            loss_real, grad_real = objective.discriminator_real(logits_real)
            D.backward(grad_real, input_grad=False, accumulate=False)
            logits_fake = D.forward(fake_in)
            loss_fake, grad_fake = objective.discriminator_fake(logits_fake)
            D.backward(grad_fake, input_grad=False)
            d_loss = float(loss_real + loss_fake)
            d_real, d_fake = objective.summary(logits_real), objective.summary(logits_fake)
        if objective.gp_weight:
            mix_shape = (real_in.shape[0],) + (1,) * (real_in.ndim - 1)
            mix = self.backend.uniform(mix_shape)  # one interpolation weight per D input
            x_hat = mix * real_in + (1 - mix) * fake_in
            d_loss += gradient_penalty(D, x_hat, objective.gp_weight)
        self.d_opt.step()
        objective.after_discriminator_step(D)
        return fake, {"d_loss": d_loss, "d_real": d_real, "d_fake": d_fake}

    def _generator_step(self, fake: Any) -> float:
        loss, grad = self.objective.generator(self.discriminator.forward(self._packed(fake)))
        dfake = self.discriminator.backward(grad, param_grads=False)  # (N / pack, ..., pack * C)
        self.generator.backward(self._unpacked(dfake, fake.shape[1:]), input_grad=False, accumulate=False)
        self.g_opt.step()
        if self.ema_decay:
            update_average(self.models["generator_ema"], self.generator, self.ema_decay)
        return float(loss)

    def train_step(self, real: Any | Sequence[Any], z: Any | Sequence[Any] | None = None) -> dict[str, float]:
        """One training step: `d_steps` discriminator updates, then one generator update.

        Args:
            real: a real batch (N, *shape); with d_steps > 1 also a sequence of
                d_steps batches, one per discriminator step (one batch is reused).
            z: the noise (N, latent_dim), or a sequence of d_steps of them; drawn from
                the backend's generator when None.

        Returns:
            d_loss (including any gradient penalty), g_loss, and d_real / d_fake, the
            objective's summary of D's outputs on the real and fake batch of the last
            discriminator step (mean probabilities for the BCE losses, mean scores otherwise).
        """
        reals = list(real) if isinstance(real, (list, tuple)) else [real] * self.d_steps
        noises = list(z) if isinstance(z, (list, tuple)) else [z] * self.d_steps
        if len(reals) != self.d_steps or len(noises) != self.d_steps:
            raise ValueError(f"expected {self.d_steps} real and noise batches (d_steps), "
                             f"got {len(reals)} and {len(noises)}")
        shape = self.generator.output_shape
        for real_batch, noise in zip(reals, noises):
            real_batch = data_batch(self.backend, real_batch, shape, "real")
            noise = self.noise(real_batch.shape[0]) if noise is None else self.backend.asarray(noise)
            fake, stats = self._discriminator_step(real_batch, noise)
        stats["g_loss"] = self._generator_step(fake)
        self.steps += 1
        return stats
