"""`VAE`: the variational autoencoder (Kingma & Welling 2014): an encoder q(z|x), a decoder
p(x|z), the training step with its hand-written backward, sampling, the ELBO, the
importance-weighted log-likelihood (Burda et al. 2016), and its config.

The loss, as the paper writes it, per example (nats), with a beta weight on the KL term:
    L(x) = -E_q(z|x)[log p(x|z)] + beta * KL(q(z|x) || p(z)),
    q(z|x) = N(mu, diag(exp(logvar))), (mu, logvar) = encoder(x),  p(z) = N(0, I),
    KL = -1/2 * sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))   (closed form),
and the expectation by one reparameterised sample z = mu + exp(logvar / 2) * eps,
eps ~ N(0, I). The batch loss is the mean over the N examples; the likelihood p(x|z) is
one of `minigan.likelihoods` (Bernoulli on logits, Gaussian on means).
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .backend import Backend
from .layers import positive_int, positive_number
from .likelihoods import LIKELIHOODS, LogSigma
from .model import Sequential, evaluating
from .optim import Adam, Optimizer, optimizer_from_config
from .trainable import Trainable, check_optimizers, check_same_backend, data_batch

LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(xp: Any, mu: Any, logvar: Any) -> Any:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row, (N,): -1/2 sum(1 + logvar - mu^2 - exp(logvar))."""
    return -0.5 * xp.sum(1 + logvar - mu * mu - xp.exp(logvar), axis=1)


def log_mean_exp(log_weights: np.ndarray) -> np.ndarray:
    """log((1/k) sum_j exp(w_ij)) per row of a host (N, k) array, in float64, stably."""
    log_weights = np.asarray(log_weights, dtype=np.float64)
    top = log_weights.max(axis=1, keepdims=True)  # (N, 1): the largest weight becomes exp(0)
    return top[:, 0] + np.log(np.mean(np.exp(log_weights - top), axis=1))


def latent_width(encoder: Sequential, decoder: Sequential) -> int:
    """The code width L of an encoder emitting (mu, logvar) as (2 L,) features and a decoder
    reading (L,); ValueError saying which does not fit."""
    if len(encoder.output_shape) != 1 or encoder.output_shape[0] % 2:
        raise ValueError(f"the encoder must output (2 * latent_dim,) features, (mu, logvar) side "
                         f"by side, not {encoder.output_shape}")
    latent = encoder.output_shape[0] // 2
    if decoder.input_shape != (latent,):
        raise ValueError(f"the encoder outputs 2 * {latent} features, so the decoder must "
                         f"read ({latent},), not {decoder.input_shape}")
    return latent


def noise(backend: Backend, name: str, value: Any, shape: tuple[int, ...]) -> Any:
    """N(0, I) noise of `shape` from the backend's generator, or the given `value` checked."""
    if value is None:
        return backend.standard_normal(shape)
    value = backend.asarray(value)
    if tuple(value.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}")
    return value


def posterior_gradient(xp: Any, mu: Any, std: Any, eps: Any, dz: Any, kl_weight: float) -> Any:
    """dL/d(encoder output) = [dL/dmu, dL/dlogvar], (N, 2 L), for L = (a loss of
    z = mu + std * eps, whose gradient is dz) + kl_weight * sum_i KL_i (closed form)."""
    dh = xp.empty((mu.shape[0], 2 * mu.shape[1]), dtype=mu.dtype)
    dmu, dlogvar = dh[:, :mu.shape[1]], dh[:, mu.shape[1]:]
    # dL/dmu = dL/dz * dz/dmu (= 1) + kl_weight * dKL/dmu (= mu)
    xp.multiply(mu, kl_weight, out=dmu)
    dmu += dz
    # dL/dlogvar = dL/dz * dz/dlogvar (= eps * exp(logvar / 2) / 2)
    #              + kl_weight * dKL/dlogvar (= (exp(logvar) - 1) / 2)
    xp.multiply(dz, eps, out=dlogvar)
    dlogvar *= std
    dlogvar += kl_weight * (std * std - 1)  # exp(logvar) = std^2
    dlogvar /= 2
    return dh




class VAE(Trainable):
    """An encoder/decoder pair, a likelihood and their optimizers.

    Args:
        encoder: maps (N, *shape) data to (N, 2 * latent_dim): (mu, logvar) side by side.
        decoder: maps (N, latent_dim) to (N, *shape): logits (Bernoulli) or means
            (Gaussian); same backend and dtype.
        likelihood: "bernoulli" (default), "gaussian" (fixed sigma = exp(log_sigma)) or
            "gaussian_learned" (log_sigma a trained scalar, starting at `log_sigma`, in
            models["log_sigma"], with its own Adam at the decoder optimizer's lr).
        beta: weight of the KL term, > 0 (1: the VAE; other values: beta-VAE).
        encoder_opt, decoder_opt: optimizers; default Adam(lr=1e-3) each. Adam is
            per-element, so Adam on the two flat buffers is the same as one Adam over
            all parameters.
        log_sigma: the Gaussian likelihoods' log standard deviation.
    """

    stat_names = ("loss", "recon", "kl")

    def __init__(self, encoder: Sequential, decoder: Sequential, likelihood: str = "bernoulli",
                 beta: float = 1.0, encoder_opt: Optimizer | None = None,
                 decoder_opt: Optimizer | None = None, log_sigma: float = 0.0):
        if not isinstance(likelihood, str) or likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {sorted(LIKELIHOODS)}, got {likelihood!r}")
        beta = positive_number("beta", beta)
        if isinstance(log_sigma, bool) or not isinstance(log_sigma, numbers.Real) or not math.isfinite(log_sigma):
            raise ValueError(f"log_sigma must be a finite number, got {log_sigma!r}")
        self.models = {"encoder": encoder, "decoder": decoder}
        self.backend = check_same_backend(self.models)
        self.latent_dim = latent_width(encoder, decoder)
        if encoder.input_shape != decoder.output_shape:
            raise ValueError(f"the decoder makes data of shape {decoder.output_shape}, but the encoder "
                             f"reads {encoder.input_shape}")
        self.encoder, self.decoder = encoder, decoder
        self.beta = float(beta)
        self.log_sigma = float(log_sigma)  # the fixed value, or the learned one's initial value
        self.encoder_opt = encoder_opt if encoder_opt is not None else Adam(encoder, lr=1e-3)
        self.decoder_opt = decoder_opt if decoder_opt is not None else Adam(decoder, lr=1e-3)
        self.optimizers = {"encoder_opt": self.encoder_opt, "decoder_opt": self.decoder_opt}
        check_optimizers(self.optimizers, self.models)
        kind = LIKELIHOODS[likelihood]
        if kind.learned:  # one trained scalar in a one-layer network, with its own optimizer
            holder = Sequential([LogSigma(log_sigma)], backend=self.backend, input_shape=(1,))
            self.models["log_sigma"] = holder
            self.optimizers["log_sigma_opt"] = Adam(holder, lr=self.decoder_opt.lr)
            self.likelihood = kind(holder.layers[0].log_sigma)  # a (1,) view of the parameter
        else:
            self.likelihood = kind(self.backend.asarray([self.log_sigma]))
        self.steps = 0  # completed train_step calls

    def config(self) -> dict[str, Any]:
        return {"encoder": self.encoder.config(), "decoder": self.decoder.config(),
                "likelihood": self.likelihood.name, "beta": self.beta, "log_sigma": self.log_sigma,
                "optimizers": {name: self.optimizers[name].config() for name in ("encoder_opt", "decoder_opt")}}

    @classmethod
    def from_config(cls, config: dict[str, Any], backend: Backend) -> "VAE":
        encoder = Sequential.from_config(config["encoder"], backend)
        decoder = Sequential.from_config(config["decoder"], backend)
        optimizers = config["optimizers"]
        return cls(encoder, decoder, likelihood=config["likelihood"], beta=config["beta"],
                   encoder_opt=optimizer_from_config(encoder, optimizers["encoder_opt"]),
                   decoder_opt=optimizer_from_config(decoder, optimizers["decoder_opt"]),
                   log_sigma=config["log_sigma"])

    # ------------------------------------------------------------------ checked inputs

    def _data(self, x: Any) -> Any:
        """x as a backend array, refused unless (N >= 1, *shape) and valid for the likelihood."""
        x = data_batch(self.backend, x, self.decoder.output_shape)
        self.likelihood.check(x)
        return x

    # ------------------------------------------------------------------ the model

    def encode(self, x: Any) -> tuple[Any, Any]:
        """(mu, logvar) of q(z|x), each (N, latent_dim), in evaluation mode."""
        with evaluating(self.encoder):
            return self._split(self.encoder.forward(self.backend.asarray(x)))

    def _split(self, h: Any) -> tuple[Any, Any]:
        return h[:, :self.latent_dim], h[:, self.latent_dim:]  # (N, L) views each

    def reconstruct(self, x: Any) -> Any:
        """The decoder's data-space mean (sigmoid of logits, or the Gaussian mean) at z = mu."""
        mu, _ = self.encode(x)
        with evaluating(self.decoder):
            return self.likelihood.mean(self.decoder.forward(mu))

    def sample(self, n: int, z: Any = None) -> Any:
        """n data-space samples' means (n, *shape) from z ~ N(0, I) (or the given z), in evaluation mode."""
        if z is None:
            z = self.backend.standard_normal((positive_int("n", n), self.latent_dim))
        z = self.backend.asarray(z)
        with evaluating(self.decoder):
            return self.likelihood.mean(self.decoder.forward(z))

    def _forward(self, x: Any, eps: Any) -> tuple[Any, ...]:
        """The loss's forward pass: (h, eps, std, out, recon, kl), recon and kl (N,)."""
        xp = self.backend.xp
        h = self.encoder.forward(x)                                # (N, 2 L)
        mu, logvar = self._split(h)                                # (N, L) each
        eps = noise(self.backend, "eps", eps, tuple(mu.shape))    # (N, L)
        std = xp.exp(logvar / 2)                                   # (N, L)
        out = self.decoder.forward(mu + std * eps)                 # z = mu + std eps; (N, *shape)
        recon = self.likelihood.nll(x, out)                        # -log p(x|z), (N,)
        return h, eps, std, out, recon, gaussian_kl(xp, mu, logvar)

    def train_step(self, x: Any, eps: Any = None) -> dict[str, float]:
        """One step on both networks (and a learned log sigma) for a data batch x (N, *shape).

        Args:
            eps: the reparameterisation noise (N, latent_dim); drawn from the backend's
                generator when None.

        Returns:
            loss = recon + beta * kl, recon and kl: batch means, nats per example.
        """
        x = self._data(x)
        n, xp, beta = x.shape[0], self.backend.xp, self.beta
        h, eps, std, out, recon, kl = self._forward(x, eps)
        mu, logvar = self._split(h)
        # L = (1/N) sum_i [nll(x_i, out_i) + beta KL_i]; every gradient below carries the 1/N.
        dout = self.likelihood.grad(x, out)  # d nll_i / d out_i
        dout /= n                            # dL/dout, (N, *shape)
        dz = self.decoder.backward(dout, accumulate=False)  # dL/dz, (N, L); writes the decoder's grads
        dh = posterior_gradient(xp, mu, std, eps, dz, beta / n)  # [dL/dmu, dL/dlogvar], (N, 2 L)
        self.encoder.backward(dh, input_grad=False, accumulate=False)
        if self.likelihood.learned:  # dL/dlog_sigma = (1/N) sum_i d nll_i / d log_sigma
            self.models["log_sigma"].grads[...] = self.likelihood.log_sigma_grad(x, out).sum() / n
        for optimizer in self.optimizers.values():
            optimizer.step()
        self.steps += 1
        recon_mean, kl_mean = float(recon.mean()), float(kl.mean())
        return {"loss": recon_mean + beta * kl_mean, "recon": recon_mean, "kl": kl_mean}

    # ------------------------------------------------------------------ evaluation

    def elbo(self, x: Any, eps: Any = None) -> np.ndarray:
        """The evidence lower bound per example, E_q[log p(x|z)] - KL (beta not applied), with
        the closed-form KL and one reparameterised sample (eps drawn when None), in
        evaluation mode: a host float64 (N,) array, nats (negative)."""
        x = self._data(x)
        with evaluating(self.encoder, self.decoder):
            *_, recon, kl = self._forward(x, eps)
        return self.backend.to_numpy(-(recon + kl)).astype(np.float64)

    def log_likelihood(self, x: Any, k: int = 100, batch_size: int = 64) -> np.ndarray:
        """The importance-weighted estimate of log p(x) per example (Burda et al.):

            log (1/k) sum_j p(x|z_j) p(z_j) / q(z_j|x),   z_j ~ q(z|x),

        the log weights computed on the backend and combined with log-mean-exp in float64
        on the host; it is the ELBO (with a sampled KL) for k = 1 and rises towards log p(x)
        with k. In evaluation mode.

        Args:
            k: importance samples per example.
            batch_size: examples per decoder pass (each pass decodes batch_size * k codes).

        Returns:
            A host float64 (N,) array, nats.
        """
        k, batch_size = positive_int("k", k), positive_int("batch_size", batch_size)
        x, xp, latent = self._data(x), self.backend.xp, self.latent_dim
        log_weights = np.empty((x.shape[0], k))
        with evaluating(self.encoder, self.decoder):
            for start in range(0, x.shape[0], batch_size):
                chunk = x[start:start + batch_size]                       # (B, *shape)
                b = chunk.shape[0]
                mu, logvar = self._split(self.encoder.forward(chunk))    # (B, L) each
                eps = self.backend.standard_normal((b, k, latent))       # (B, k, L)
                z = mu[:, None] + xp.exp(logvar / 2)[:, None] * eps      # (B, k, L)
                out = self.decoder.forward(z.reshape(b * k, latent))     # (B k, *shape)
                log_px = self.likelihood.log_prob(xp.repeat(chunk, k, axis=0), out).reshape(b, k)
                log_pz = -0.5 * xp.sum(z * z + LOG_2PI, axis=2)          # log N(z; 0, I), (B, k)
                # log N(z; mu, exp(logvar)) with (z - mu) / exp(logvar / 2) = eps exactly
                log_qz = -0.5 * xp.sum(eps * eps + logvar[:, None] + LOG_2PI, axis=2)
                log_weights[start:start + b] = self.backend.to_numpy(log_px + log_pz - log_qz)
        return log_mean_exp(log_weights)
