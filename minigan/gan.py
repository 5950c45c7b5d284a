"""`GAN`: a generator and a discriminator, the training step, sampling, save and load.

One `train_step`, exactly (DESIGN.md, "The GAN step"):
  1. fake = G(z) for one noise batch z.
  2. D step: L_D = loss(D(x), real) + loss(D(fake), fake) (a sum of two means), plus the
     gradient penalty for WGAN-GP; one optimizer step on D (then weight clipping for WGAN).
     D runs once on the concatenated batch [x; fake]: every layer acts on each row
     alone, so this is the same gradient as two passes accumulated, with half the
     matrix-product calls, each on twice the rows.
  3. G step, with the *updated* D and the same fake: L_G from D(fake); backpropagate
     through D without D's parameter gradients (`param_grads=False`), then through G;
     one optimizer step on G.
With `d_steps=k`, steps 1-2 run k times (fresh z each time) and step 3 uses the last fake.
With `pack=m` (PacGAN), D sees m consecutive samples of a batch concatenated into one input.
"""
from __future__ import annotations

from typing import Any, Sequence

from .model import Sequential
from .objectives import OBJECTIVES
from .optim import Optimizer
from .penalty import check_supported, gradient_penalty


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class GAN:
    """A generator/discriminator pair and their optimizers.

    Args:
        generator: maps (N, latent_dim) noise to (N, features) samples.
        discriminator: maps (N, pack * features) to (N, 1) outputs; same backend and dtype.
        loss: "non_saturating" (default), "minimax", "lsgan", "hinge", "wgan" or "wgan-gp".
        latent_dim: noise width; defaults to the generator's input width.
        d_opt, g_opt: optimizers; default: the loss's paper optimizer (Adam(2e-4, (0.5, 0.999));
            RMSProp(5e-5) for wgan; Adam(1e-4, (0.5, 0.9)) for wgan-gp).
        d_steps: discriminator steps per generator step; default 1, or 5 for wgan / wgan-gp.
        pack: PacGAN packing degree m (default 1: no packing).
        loss_options: the loss's own options: `label_smoothing` (non_saturating, minimax;
            one-sided, off by default), `clip_value` (wgan, 0.01), `gp_weight` (wgan-gp, 10).
    """

    def __init__(self, generator: Sequential, discriminator: Sequential, loss: str = "non_saturating",
                 latent_dim: int | None = None, d_opt: Optimizer | None = None,
                 g_opt: Optimizer | None = None, d_steps: int | None = None, pack: int = 1,
                 **loss_options: Any):
        if loss not in OBJECTIVES:
            raise ValueError(f"loss must be one of {sorted(OBJECTIVES)}, got {loss!r}")
        try:
            self.objective = OBJECTIVES[loss](**loss_options)
        except TypeError:
            raise ValueError(f"loss {loss!r} takes no options {sorted(loss_options)}") from None
        g_backend, d_backend = generator.backend, discriminator.backend
        if g_backend.xp is not d_backend.xp or g_backend.dtype != d_backend.dtype:
            raise ValueError(f"generator ({g_backend}) and discriminator ({d_backend}) must share "
                             f"one array backend and dtype")
        self.pack = _positive_int("pack", pack)
        if generator.out_features * pack != discriminator.in_features:
            raise ValueError(f"the generator makes {generator.out_features} features, so with pack={pack} "
                             f"the discriminator must read {generator.out_features * pack}, "
                             f"not {discriminator.in_features}")
        if discriminator.out_features != 1:
            raise ValueError(f"the discriminator must output one logit, not {discriminator.out_features}")
        if self.objective.gp_weight:
            check_supported(discriminator)
        self.latent_dim = generator.in_features if latent_dim is None else latent_dim
        if self.latent_dim != generator.in_features:
            raise ValueError(f"latent_dim {latent_dim} != generator input width {generator.in_features}")
        self.d_steps = _positive_int("d_steps", self.objective.d_steps if d_steps is None else d_steps)
        self.generator, self.discriminator = generator, discriminator
        self.backend = g_backend
        self.d_opt = d_opt if d_opt is not None else self.objective.make_optimizer(discriminator)
        self.g_opt = g_opt if g_opt is not None else self.objective.make_optimizer(generator)
        if self.d_opt.model is not discriminator or self.g_opt.model is not generator:
            raise ValueError("d_opt must optimise the discriminator and g_opt the generator")
        self.steps = 0  # completed train_step calls

    @property
    def loss(self) -> str:
        """The objective's name, e.g. "wgan-gp"."""
        return self.objective.name

    def noise(self, n: int) -> Any:
        """A batch of N(0, 1) noise, (n, latent_dim), from the backend's generator."""
        return self.backend.standard_normal((n, self.latent_dim))

    def sample(self, n: int, z: Any = None) -> Any:
        """Generates n samples, (n, features), from `z` or from fresh noise."""
        z = self.noise(n) if z is None else self.backend.asarray(z)
        return self.generator.forward(z)

    def _packed(self, samples: Any) -> Any:
        """(N, features) -> (N / pack, pack * features): a view, consecutive samples side by side."""
        if samples.shape[0] % self.pack:
            raise ValueError(f"batch size {samples.shape[0]} is not a multiple of pack={self.pack}")
        return samples.reshape(samples.shape[0] // self.pack, -1)

    def _discriminator_step(self, real: Any, z: Any) -> tuple[Any, dict[str, float]]:
        D, objective = self.discriminator, self.objective
        fake = self.generator.forward(z)  # (N, features)
        real_in, fake_in = self._packed(real), self._packed(fake)  # (N / pack, pack * features)
        logits = D.forward(self.backend.xp.concatenate([real_in, fake_in]))  # (2 N / pack, 1)
        d_loss, grad, d_real, d_fake = objective.discriminator(logits, real_in.shape[0])
        D.backward(grad, input_grad=False, accumulate=False)  # overwrites D.grads
        if objective.gp_weight:
            mix = self.backend.uniform((real_in.shape[0], 1))  # one interpolation weight per D input
            x_hat = mix * real_in + (1 - mix) * fake_in
            d_loss += gradient_penalty(D, x_hat, objective.gp_weight)
        self.d_opt.step()
        objective.after_discriminator_step(D)
        return fake, {"d_loss": d_loss, "d_real": d_real, "d_fake": d_fake}

    def _generator_step(self, fake: Any) -> float:
        loss, grad = self.objective.generator(self.discriminator.forward(self._packed(fake)))
        dfake = self.discriminator.backward(grad, param_grads=False)  # (N / pack, pack * features)
        self.generator.backward(dfake.reshape(fake.shape), input_grad=False, accumulate=False)
        self.g_opt.step()
        return float(loss)

    def train_step(self, real: Any | Sequence[Any], z: Any | Sequence[Any] | None = None) -> dict[str, float]:
        """One training step: `d_steps` discriminator updates, then one generator update.

        Args:
            real: a real batch (N, features); with d_steps > 1 also a sequence of
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
        features = self.generator.out_features
        for real_batch, noise in zip(reals, noises):
            real_batch = self.backend.asarray(real_batch)
            if real_batch.ndim != 2 or real_batch.shape[1] != features:
                raise ValueError(f"a real batch must have shape (N, {features}), got {tuple(real_batch.shape)}")
            noise = self.noise(real_batch.shape[0]) if noise is None else self.backend.asarray(noise)
            fake, stats = self._discriminator_step(real_batch, noise)
        stats["g_loss"] = self._generator_step(fake)
        self.steps += 1
        return stats

    def save(self, path: str, extra: dict | None = None) -> None:
        """Writes a checkpoint atomically (see `minigan.checkpoint`)."""
        from .checkpoint import save_checkpoint  # checkpoint imports this module
        save_checkpoint(path, self, extra)

    @classmethod
    def load(cls, path: str, backend: Any = None) -> "GAN":
        """Rebuilds a GAN from a checkpoint, on its recorded backend unless one is given."""
        from .checkpoint import load_checkpoint
        return load_checkpoint(path, backend)[0]
