"""`GAN`: a generator and a discriminator, the training step, sampling, save and load.

One `train_step`, exactly (DESIGN.md, "The GAN step"):
  1. fake = G(z) for one noise batch z.
  2. D step: L_D = loss(D(x), real) + loss(D(fake), fake) (a sum of two means); D's
     gradients accumulate over the real and the fake batch; one optimizer step on D.
  3. G step, with the *updated* D and the same fake: L_G from D(fake); backpropagate
     through D without D's parameter gradients (`param_grads=False`), then through G;
     one optimizer step on G.
With `d_steps=k`, step 1-2 run k times (fresh z each time) and step 3 uses the last fake.
"""
from __future__ import annotations

from typing import Any, Sequence

from .layers import sigmoid
from .losses import ADVERSARIAL_LOSSES
from .model import Sequential
from .optim import Adam, Optimizer


class GAN:
    """A generator/discriminator pair and their optimizers.

    Args:
        generator: maps (N, latent_dim) noise to (N, features) samples.
        discriminator: maps (N, features) to (N, 1) logits; same backend and dtype as G.
        loss: "non_saturating" (default) or "minimax".
        latent_dim: noise width; defaults to the generator's input width.
        d_opt, g_opt: optimizers; default Adam(lr=2e-4, betas=(0.5, 0.999)) each.
        d_steps: discriminator steps per generator step (default 1).
        label_smoothing: one-sided smoothing of D's real target (default 0: off).
    """

    def __init__(self, generator: Sequential, discriminator: Sequential, loss: str = "non_saturating",
                 latent_dim: int | None = None, d_opt: Optimizer | None = None,
                 g_opt: Optimizer | None = None, d_steps: int = 1, label_smoothing: float = 0.0):
        if loss not in ADVERSARIAL_LOSSES:
            raise ValueError(f"loss must be one of {sorted(ADVERSARIAL_LOSSES)}, got {loss!r}")
        g_backend, d_backend = generator.backend, discriminator.backend
        if g_backend.xp is not d_backend.xp or g_backend.dtype != d_backend.dtype:
            raise ValueError(f"generator ({g_backend}) and discriminator ({d_backend}) must share "
                             f"one array backend and dtype")
        if generator.out_features != discriminator.in_features:
            raise ValueError(f"the generator makes {generator.out_features} features but the "
                             f"discriminator reads {discriminator.in_features}")
        if discriminator.out_features != 1:
            raise ValueError(f"the discriminator must output one logit, not {discriminator.out_features}")
        self.latent_dim = generator.in_features if latent_dim is None else latent_dim
        if self.latent_dim != generator.in_features:
            raise ValueError(f"latent_dim {latent_dim} != generator input width {generator.in_features}")
        if isinstance(d_steps, bool) or not isinstance(d_steps, int) or d_steps < 1:
            raise ValueError(f"d_steps must be a positive integer, got {d_steps!r}")
        self.generator, self.discriminator = generator, discriminator
        self.backend = g_backend
        self.loss = ADVERSARIAL_LOSSES[loss](label_smoothing=label_smoothing)
        self.d_steps = d_steps
        self.d_opt = d_opt if d_opt is not None else Adam(discriminator, lr=2e-4, betas=(0.5, 0.999))
        self.g_opt = g_opt if g_opt is not None else Adam(generator, lr=2e-4, betas=(0.5, 0.999))
        if self.d_opt.model is not discriminator or self.g_opt.model is not generator:
            raise ValueError("d_opt must optimise the discriminator and g_opt the generator")
        self.steps = 0  # completed train_step calls

    def noise(self, n: int) -> Any:
        """A batch of N(0, 1) noise, (n, latent_dim), from the backend's generator."""
        return self.backend.standard_normal((n, self.latent_dim))

    def sample(self, n: int, z: Any = None) -> Any:
        """Generates n samples, (n, features), from `z` or from fresh noise."""
        z = self.noise(n) if z is None else self.backend.asarray(z)
        return self.generator.forward(z)

    def _discriminator_step(self, real: Any, z: Any) -> tuple[Any, dict[str, float]]:
        xp, D = self.backend.xp, self.discriminator
        fake = self.generator.forward(z)  # (N, features)
        D.zero_grad()
        logits_real = D.forward(real)  # (N, 1)
        loss_real, grad = self.loss.discriminator_real(logits_real)
        D.backward(grad, input_grad=False)
        logits_fake = D.forward(fake)
        loss_fake, grad = self.loss.discriminator_fake(logits_fake)
        D.backward(grad, input_grad=False)
        self.d_opt.step()
        return fake, {"d_loss": float(loss_real + loss_fake),
                      "d_real": _mean_probability(xp, logits_real),
                      "d_fake": _mean_probability(xp, logits_fake)}

    def _generator_step(self, fake: Any) -> float:
        self.generator.zero_grad()
        loss, grad = self.loss.generator(self.discriminator.forward(fake))
        self.generator.backward(self.discriminator.backward(grad, param_grads=False), input_grad=False)
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
            d_loss, g_loss, and the mean discriminator probabilities d_real = D(x) and
            d_fake = D(G(z)) of the last discriminator step.
        """
        reals = list(real) if isinstance(real, (list, tuple)) else [real] * self.d_steps
        noises = list(z) if isinstance(z, (list, tuple)) else [z] * self.d_steps
        if len(reals) != self.d_steps or len(noises) != self.d_steps:
            raise ValueError(f"expected {self.d_steps} real and noise batches (d_steps), "
                             f"got {len(reals)} and {len(noises)}")
        for real_batch, noise in zip(reals, noises):
            real_batch = self.backend.asarray(real_batch)
            noise = self.noise(real_batch.shape[0]) if noise is None else self.backend.asarray(noise)
            fake, stats = self._discriminator_step(real_batch, noise)
        stats["g_loss"] = self._generator_step(fake)
        self.steps += 1
        return stats

    def save(self, path: str, extra: dict | None = None) -> None:
        """Writes a checkpoint atomically (see `minigan.checkpoint`)."""
        from .checkpoint import save_checkpoint
        save_checkpoint(path, self, extra)

    @classmethod
    def load(cls, path: str, backend: Any = None) -> "GAN":
        """Rebuilds a GAN from a checkpoint, on its recorded backend unless one is given."""
        from .checkpoint import load_checkpoint
        return load_checkpoint(path, backend)[0]


def _mean_probability(xp: Any, logits: Any) -> float:
    """Mean sigmoid(logits): the discriminator's average belief that its input is real."""
    return float(xp.mean(sigmoid(xp, logits)))
