"""Losses on logits: `BCEWithLogits` and `SoftmaxCrossEntropy`.

Each loss has `forward(logits, targets)`, which returns the scalar mean loss as a 0-d
array of the logits' backend, and `backward()`, which returns dL/dlogits for that
same call. Both are computed from logits in a stable form: no log(sigmoid(x)), no exp
of a large positive number.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .backend import array_module
from .layers import sigmoid


def softplus(xp: Any, x: Any) -> Any:
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), finite for every finite x."""
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


class BCEWithLogits:
    """Binary cross-entropy on logits, mean over all elements (torch's BCEWithLogitsLoss).

    loss = mean(softplus(x) - t * x), the same as -t log s(x) - (1 - t) log(1 - s(x)).
    d loss / dx = (sigmoid(x) - t) / numel.
    """

    def forward(self, logits: Any, targets: Any) -> Any:
        """Args: logits (N, ...) array; targets a scalar or an array of the same shape."""
        xp = array_module(logits)
        if not np.isscalar(targets) and tuple(targets.shape) != tuple(logits.shape):
            raise ValueError(f"targets of shape {tuple(targets.shape)} do not match "
                             f"logits of shape {tuple(logits.shape)}")
        self.xp, self.logits, self.targets = xp, logits, targets
        return xp.mean(softplus(xp, logits) - targets * logits)

    def backward(self) -> Any:
        """Returns dL/dlogits for the last `forward`."""
        grad = sigmoid(self.xp, self.logits)
        grad -= self.targets
        grad /= self.logits.size
        return grad


class SoftmaxCrossEntropy:
    """Cross-entropy of softmax(logits) against integer class labels, mean over the batch.

    loss = mean_i(logsumexp(x_i) - x_i[label_i]); d loss / dx_i = (softmax(x_i) - onehot_i) / N.
    """

    def forward(self, logits: Any, labels: Any) -> Any:
        """Args: logits (N, C) array; labels (N,) integers in [0, C)."""
        xp = array_module(logits)
        if logits.ndim != 2 or tuple(labels.shape) != (logits.shape[0],):
            raise ValueError(f"SoftmaxCrossEntropy needs logits (N, C) and labels (N,), "
                             f"got {tuple(logits.shape)} and {tuple(labels.shape)}")
        shifted = logits - logits.max(axis=1, keepdims=True)  # largest logit becomes 0
        log_norm = xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))  # (N, 1)
        self.log_probs = shifted - log_norm  # (N, C)
        self.labels = labels
        rows = xp.arange(logits.shape[0])
        return -xp.mean(self.log_probs[rows, labels])

    def backward(self) -> Any:
        """Returns dL/dlogits for the last `forward`."""
        xp = array_module(self.log_probs)
        grad = xp.exp(self.log_probs)  # softmax
        rows = xp.arange(grad.shape[0])
        grad[rows, self.labels] -= 1
        grad /= grad.shape[0]
        return grad


class NonSaturatingLoss:
    """The GAN objective of Goodfellow et al. (2014) with the non-saturating generator loss.

    D minimises BCE(D(x), 1) + BCE(D(fake), 0); G minimises BCE(D(fake), 1), i.e.
    maximises log D(G(z)), which keeps its gradient alive when D rejects every fake.

    Args:
        label_smoothing: one-sided label smoothing, the real target becomes 1 - smoothing.
    """

    name = "non_saturating"

    def __init__(self, label_smoothing: float = 0.0):
        if not 0.0 <= label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing!r}")
        self.label_smoothing = label_smoothing
        self.bce = BCEWithLogits()

    def options(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this loss (saved in checkpoints)."""
        return {"label_smoothing": self.label_smoothing}

    def _bce(self, logits: Any, target: float) -> tuple[Any, Any]:
        value = self.bce.forward(logits, target)
        return value, self.bce.backward()

    def discriminator_real(self, logits: Any) -> tuple[Any, Any]:
        """D's loss term on real logits and its gradient."""
        return self._bce(logits, 1.0 - self.label_smoothing)

    def discriminator_fake(self, logits: Any) -> tuple[Any, Any]:
        """D's loss term on fake logits and its gradient."""
        return self._bce(logits, 0.0)

    def generator(self, logits: Any) -> tuple[Any, Any]:
        """G's loss on D's logits for its samples, and the gradient w.r.t. those logits."""
        return self._bce(logits, 1.0)


class MinimaxLoss(NonSaturatingLoss):
    """The original minimax objective: G minimises mean log(1 - D(G(z))) = -BCE(D(fake), 0)."""

    name = "minimax"

    def generator(self, logits: Any) -> tuple[Any, Any]:
        value, grad = self._bce(logits, 0.0)
        grad *= -1
        return -value, grad


ADVERSARIAL_LOSSES = {cls.name: cls for cls in (NonSaturatingLoss, MinimaxLoss)}
