"""GAN objectives: what each player minimises, computed from the discriminator's outputs.

Every objective gives, for a batch of discriminator outputs `logits` (N, 1), the loss
term and its gradient with respect to those outputs (for a discriminator with k heads,
logits (N, k), every term is a mean over all N k entries: the mean of the heads' losses):
`discriminator_real`, `discriminator_fake` (D minimises their sum) and `generator`.
`discriminator` scores one concatenated [real; fake] batch at once: what the GAN step
calls, so that D runs one forward and one backward pass over both halves.
It also names its paper defaults (optimizer, critic steps) and `summary`, the number
reported as D(x) / D(G(z)): a probability for the BCE objectives, the mean raw output
(the critic's score) otherwise.
"""
from __future__ import annotations

from typing import Any

from .backend import array_module
from .layers import sigmoid
from .losses import BCEWithLogits, softplus
from .optim import Adam, Optimizer, RMSProp


def _constant_gradient(logits: Any, value: float) -> Any:
    """d/dlogits of value * sum(logits): every entry equals `value`."""
    return array_module(logits).full_like(logits, value)


class Objective:
    """Base class; subclasses set `name` and the three loss terms."""

    name = ""
    d_steps = 1          # the paper's critic steps per generator step
    gp_weight = 0.0      # weight of the gradient penalty (WGAN-GP only)

    def make_optimizer(self, model: Any) -> Optimizer:
        """The paper's optimizer for either player: Adam(2e-4, betas (0.5, 0.999))."""
        return Adam(model, lr=2e-4, betas=(0.5, 0.999))

    def options(self) -> dict[str, Any]:
        """`GAN` keyword arguments that rebuild this objective (saved in checkpoints)."""
        return {}

    def summary(self, logits: Any) -> float:
        """The mean discriminator output reported in the training statistics."""
        return float(array_module(logits).mean(logits))

    def after_discriminator_step(self, discriminator: Any) -> None:
        """Called after every discriminator update (weight clipping for WGAN)."""

    def discriminator(self, logits: Any, n_real: int) -> tuple[float, Any, float, float]:
        """D's loss on one batch whose first `n_real` rows are D(real) and the rest D(fake).

        Returns L_D (the real term plus the fake term, each a mean over its own half),
        dL_D/dlogits (same shape as `logits`), and the summaries of the real and fake halves.
        """
        real, fake = logits[:n_real], logits[n_real:]
        loss_real, grad_real = self.discriminator_real(real)
        loss_fake, grad_fake = self.discriminator_fake(fake)
        grad = array_module(logits).concatenate([grad_real, grad_fake])
        return float(loss_real + loss_fake), grad, self.summary(real), self.summary(fake)


class NonSaturatingLoss(Objective):
    """Goodfellow et al. (2014) with the non-saturating generator loss.

    D minimises BCE(D(x), 1) + BCE(D(fake), 0); G minimises BCE(D(fake), 1), i.e.
    maximises log D(G(z)), which keeps its gradient alive when D rejects every fake.

    Args:
        label_smoothing: one-sided label smoothing, the real target becomes 1 - smoothing.
    """

    name = "non_saturating"

    def __init__(self, label_smoothing: float = 0.0):
        if not 0.0 <= label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        self.bce = BCEWithLogits()

    def options(self) -> dict[str, Any]:
        return {"label_smoothing": self.label_smoothing} if self.label_smoothing else {}

    def summary(self, logits: Any) -> float:
        """Mean sigmoid(logits): D's average belief that its input is real."""
        xp = array_module(logits)
        return float(xp.mean(sigmoid(xp, logits)))

    def _bce(self, logits: Any, target: float) -> tuple[Any, Any]:
        value = self.bce.forward(logits, target)
        return value, self.bce.backward()

    def discriminator_real(self, logits: Any) -> tuple[Any, Any]:
        return self._bce(logits, 1.0 - self.label_smoothing)

    def discriminator(self, logits: Any, n_real: int) -> tuple[float, Any, float, float]:
        """The two BCE terms from one sigmoid and one softplus of the whole batch (the
        per-half methods would compute each several times): with t the real target,
        L_D = mean_real(softplus(x) - t x) + mean_fake(softplus(x)), and
        dL_D/dx = (sigmoid(x) - t) / n_real on the real rows, sigmoid(x) / n_fake on the fake
        (divided by the k heads too: each mean is over all entries of its half)."""
        xp = array_module(logits)
        real_target, n_fake = 1.0 - self.label_smoothing, logits.shape[0] - n_real
        losses = softplus(xp, logits)
        loss = (xp.mean(losses[:n_real]) - real_target * xp.mean(logits[:n_real])
                + xp.mean(losses[n_real:]))
        grad = sigmoid(xp, logits)
        d_real, d_fake = float(xp.mean(grad[:n_real])), float(xp.mean(grad[n_real:]))
        grad[:n_real] -= real_target
        heads = logits[0].size
        grad[:n_real] *= 1.0 / (n_real * heads)
        grad[n_real:] *= 1.0 / (n_fake * heads)
        return float(loss), grad, d_real, d_fake

    def discriminator_fake(self, logits: Any) -> tuple[Any, Any]:
        return self._bce(logits, 0.0)

    def generator(self, logits: Any) -> tuple[Any, Any]:
        return self._bce(logits, 1.0)


class MinimaxLoss(NonSaturatingLoss):
    """The original minimax objective: G minimises mean log(1 - D(G(z))) = -BCE(D(fake), 0)."""

    name = "minimax"

    def generator(self, logits: Any) -> tuple[Any, Any]:
        value, grad = self._bce(logits, 0.0)
        grad *= -1
        return -value, grad


class LeastSquaresLoss(Objective):
    """LSGAN (Mao et al. 2017), targets 0 (fake) and 1 (real):
    L_D = 1/2 mean((D(x) - 1)^2) + 1/2 mean(D(fake)^2);  L_G = 1/2 mean((D(fake) - 1)^2)."""

    name = "lsgan"

    @staticmethod
    def _half_squared_error(logits: Any, target: float) -> tuple[Any, Any]:
        residual = logits - target
        value = 0.5 * array_module(logits).mean(residual * residual)
        residual /= logits.size  # d/dx 1/2 mean((x - t)^2) = (x - t) / N
        return value, residual

    def discriminator_real(self, logits: Any) -> tuple[Any, Any]:
        return self._half_squared_error(logits, 1.0)

    def discriminator_fake(self, logits: Any) -> tuple[Any, Any]:
        return self._half_squared_error(logits, 0.0)

    def generator(self, logits: Any) -> tuple[Any, Any]:
        return self._half_squared_error(logits, 1.0)


class HingeLoss(Objective):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018):
    L_D = mean(relu(1 - D(x))) + mean(relu(1 + D(fake)));  L_G = -mean(D(fake))."""

    name = "hinge"

    def discriminator_real(self, logits: Any) -> tuple[Any, Any]:
        xp = array_module(logits)
        margin = 1 - logits
        grad = xp.multiply(margin > 0, -1.0 / logits.size, dtype=logits.dtype)  # d relu(1 - x) = -[x < 1]
        return xp.mean(xp.maximum(margin, 0)), grad

    def discriminator_fake(self, logits: Any) -> tuple[Any, Any]:
        xp = array_module(logits)
        margin = 1 + logits
        grad = xp.multiply(margin > 0, 1.0 / logits.size, dtype=logits.dtype)  # d relu(1 + x) = [x > -1]
        return xp.mean(xp.maximum(margin, 0)), grad

    def generator(self, logits: Any) -> tuple[Any, Any]:
        return -array_module(logits).mean(logits), _constant_gradient(logits, -1.0 / logits.size)


class WassersteinLoss(Objective):
    """WGAN (Arjovsky et al. 2017): a critic without sigmoid,
    L_D = mean D(fake) - mean D(real);  L_G = -mean D(fake); after every critic step each
    critic parameter is clipped to [-clip_value, clip_value]. Paper defaults: clip 0.01,
    RMSProp lr 5e-5, 5 critic steps per generator step.
    """

    name = "wgan"
    d_steps = 5

    def __init__(self, clip_value: float = 0.01):
        if not clip_value > 0:
            raise ValueError(f"clip_value must be positive, got {clip_value!r}")
        self.clip_value = float(clip_value)

    def options(self) -> dict[str, Any]:
        return {"clip_value": self.clip_value}

    def make_optimizer(self, model: Any) -> Optimizer:
        return RMSProp(model, lr=5e-5)

    def after_discriminator_step(self, discriminator: Any) -> None:
        """Weight clipping, in place on the flat parameter buffer."""
        discriminator.backend.xp.clip(discriminator.params, -self.clip_value, self.clip_value,
                                      out=discriminator.params)

    def discriminator_real(self, logits: Any) -> tuple[Any, Any]:
        return -array_module(logits).mean(logits), _constant_gradient(logits, -1.0 / logits.size)

    def discriminator_fake(self, logits: Any) -> tuple[Any, Any]:
        return array_module(logits).mean(logits), _constant_gradient(logits, 1.0 / logits.size)

    def generator(self, logits: Any) -> tuple[Any, Any]:
        return self.discriminator_real(logits)


class WassersteinGPLoss(WassersteinLoss):
    """WGAN-GP (Gulrajani et al. 2017): the WGAN losses without clipping, plus the penalty
    gp_weight * mean((||grad_x D(x_hat)||_2 - 1)^2) on random interpolates x_hat between
    real and fake samples. Paper defaults: weight 10, Adam lr 1e-4, betas (0.5, 0.9),
    5 critic steps per generator step.
    """

    name = "wgan-gp"

    def __init__(self, gp_weight: float = 10.0):
        if not gp_weight > 0:
            raise ValueError(f"gp_weight must be positive, got {gp_weight!r}")
        self.gp_weight = float(gp_weight)

    def options(self) -> dict[str, Any]:
        return {"gp_weight": self.gp_weight}

    def make_optimizer(self, model: Any) -> Optimizer:
        return Adam(model, lr=1e-4, betas=(0.5, 0.9))

    def after_discriminator_step(self, discriminator: Any) -> None:
        """No clipping: the penalty keeps the critic near 1-Lipschitz."""


OBJECTIVES = {cls.name: cls for cls in (NonSaturatingLoss, MinimaxLoss, LeastSquaresLoss, HingeLoss,
                                        WassersteinLoss, WassersteinGPLoss)}
