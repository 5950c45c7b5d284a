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

