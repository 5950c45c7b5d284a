"""`VAEGAN`: the VAE/GAN of Larsen et al. (2016), "Autoencoding beyond pixels using a
learned similarity metric": a VAE whose reconstruction error is measured in the feature
space of a GAN discriminator, trained together with that discriminator.

The loss, as the paper writes it, with Dis_l the output of the discriminator's l-th layer:
    L = L_prior + L_llike^Dis_l + L_GAN
    L_prior = KL(q(z|x) || p(z)),  p(z) = N(0, I)
    L_llike^Dis_l = -E_q(z|x)[log p(Dis_l(x) | z)],  p(Dis_l(x) | z) = N(Dis_l(x) | Dis_l(x~), I)
    L_GAN = log Dis(x) + log(1 - Dis(x~)) + log(1 - Dis(x_p)),
    x~ = Dec(z) for z ~ q(z|x),  x_p = Dec(z_p) for z_p ~ p(z),
and each network trains on its own part of it (the paper's Algorithm 1): the encoder on
L_prior + L_llike, the decoder on gamma L_llike and the GAN game, the discriminator on the
GAN game alone.

One `train_step`, exactly. With a real batch X (N, *shape), eps and z_p (N, latent) each
(drawn in that order from the backend's generator when not given):
    (mu, logvar) = Enc(X);  z = mu + exp(logvar / 2) * eps;  X~ = Dec(z);  X_p = Dec(z_p)
    L_prior   = mean_i KL(N(mu_i, exp(logvar_i)) || N(0, I))          (closed form, summed over latent dims)
    L_llike   = mean_i 1/2 sum_features (Dis_l(X~)_i - Dis_l(X)_i)^2  (unit-variance Gaussian, constant
                dropped; Dis_l(X) is a fixed target: no gradient flows into it)
    L_D       = BCE(D(X), 1) + BCE(D(X~), 0) + BCE(D(X_p), 0)         (three means; D minimises -L_GAN)
    L_dec_gan = BCE(D(X~), 1) + BCE(D(X_p), 1)                        (the non-saturating decoder loss)
All gradients are taken at the parameters the step starts from, then the three optimizers step:
    encoder        d(beta L_prior + L_llike) / d theta_Enc
    decoder        d(gamma L_llike + L_dec_gan) / d theta_Dec
    discriminator  d L_D / d theta_Dis
The networks run in their current mode (training, normally). D runs on X, X~ and X_p in
three passes in that order and the decoder on z and then z_p in two (with BatchNorm each
batch is normalised by its own statistics and the running statistics move once per pass);
each pass's backward calls end before the next pass of that network begins.

The gradients, term by term (each carries the batch mean's 1/N):
    BCE(D(X), 1)      -> D's parameters                    (sigmoid(D(X)) - 1) / N
    BCE(D(X~), 0)     -> D's parameters                    sigmoid(D(X~)) / N
    BCE(D(X_p), 0)    -> D's parameters                    sigmoid(D(X_p)) / N
    BCE(D(X~), 1)     -> through D (not its parameters) into X~, then the decoder's parameters
    BCE(D(X_p), 1)    -> through D into X_p, then the decoder's parameters
    L_llike           -> (Dis_l(X~) - Dis_l(X)) / N at layer l, through D's layers l..0 (not
                         its parameters) into X~; times gamma to the decoder's parameters, and
                         times 1 through the decoder into z, then mu and logvar, the encoder
    L_prior           -> times beta into mu and logvar, the encoder
No GAN term reaches the encoder and L_llike does not train the discriminator.

Defaults, and where the authors' released code (github.com/andersbll/autoencoding_beyond_pixels)
differs: that code trains all three networks with RMSProp, on losses summed over the batch,
with a learning rate annealed per epoch; here each optimizer is RMSProp(lr=3e-4) (torch's
rule, alpha 0.99, eps 1e-8) on batch means, a fixed rate not checked against the paper's
text: choose per data set. It weights the decoder's feature-reconstruction gradient
against its GAN gradient as w : (1 - w), w = 1e-5 for CelebA, i.e. gamma ~ 1e-5 at its
scale; gamma defaults to 1 here: choose per data set. Its decoder plays the minimax game
(the reversed gradient of L_GAN), runs D once on the concatenated batches, and skips the
decoder's or D's update when D is far from an equilibrium; none of these is done here.
"""
from __future__ import annotations

from typing import Any

from .backend import Backend
from .layers import positive_int, positive_number
from .model import Sequential, evaluating
from .objectives import NonSaturatingLoss
from .optim import Optimizer, RMSProp, optimizer_from_config
from .trainable import Trainable, check_optimizers, check_same_backend, data_batch
from .vae import gaussian_kl, latent_width, noise, posterior_gradient


class VAEGAN(Trainable):
    """An encoder, a decoder and a discriminator, and their optimizers (module docstring).

    Args:
        encoder: maps (N, *shape) data to (N, 2 * latent_dim): (mu, logvar) side by side.
        decoder: maps (N, latent_dim) to (N, *shape) in data space (e.g. a Tanh output for
            data in [-1, 1], Sigmoid for [0, 1]).
        discriminator: maps (N, *shape) to (N, 1) logits; same backend and dtype for all three.
        feature_layer: the index l of the discriminator layer whose output is the feature
            space Dis_l; negative counts from the end; not the last layer.
        gamma: weight of L_llike in the decoder's loss, > 0.
        beta: weight of L_prior in the encoder's loss, > 0.
        encoder_opt, decoder_opt, discriminator_opt: optimizers; default RMSProp(lr=3e-4) each.

    `train_step` returns, all for the batch of the step and before its update:
        prior    L_prior, nats per example
        llike    L_llike
        d_loss   L_D
        dec_gan  L_dec_gan
        d_real, d_recon, d_fake  the mean of sigmoid(D(.)) on X, X~ and X_p: D's average
                 belief that each batch is real.
    """

    stat_names = ("prior", "llike", "d_loss", "dec_gan", "d_real", "d_recon", "d_fake")

    def __init__(self, encoder: Sequential, decoder: Sequential, discriminator: Sequential,
                 feature_layer: int, gamma: float = 1.0, beta: float = 1.0,
                 encoder_opt: Optimizer | None = None, decoder_opt: Optimizer | None = None,
                 discriminator_opt: Optimizer | None = None):
        self.gamma, self.beta = positive_number("gamma", gamma), positive_number("beta", beta)
        self.models = {"encoder": encoder, "decoder": decoder, "discriminator": discriminator}
        self.backend = check_same_backend(self.models)
        self.latent_dim = latent_width(encoder, decoder)
        for name, model in (("discriminator", discriminator), ("encoder", encoder)):
            if model.input_shape != decoder.output_shape:
                raise ValueError(f"the decoder makes data of shape {decoder.output_shape}, but the {name} "
                                 f"reads {model.input_shape}")
        if discriminator.output_shape != (1,):
            raise ValueError(f"the discriminator must output one logit per input, not "
                             f"{discriminator.output_shape}")
        try:
            self.feature_layer = discriminator.layer_index(feature_layer)
        except ValueError as error:
            raise ValueError(f"feature_layer: {error}") from None
        if self.feature_layer == len(discriminator.layers) - 1:
            raise ValueError(f"feature_layer must be a hidden layer of the discriminator, not its last "
                             f"(layer {self.feature_layer}, the logit)")
        self.encoder, self.decoder, self.discriminator = encoder, decoder, discriminator
        self.objective = NonSaturatingLoss()
        self.encoder_opt = encoder_opt if encoder_opt is not None else RMSProp(encoder, lr=3e-4)
        self.decoder_opt = decoder_opt if decoder_opt is not None else RMSProp(decoder, lr=3e-4)
        self.discriminator_opt = (discriminator_opt if discriminator_opt is not None
                                  else RMSProp(discriminator, lr=3e-4))
        self.optimizers = {"encoder_opt": self.encoder_opt, "decoder_opt": self.decoder_opt,
                           "discriminator_opt": self.discriminator_opt}
        check_optimizers(self.optimizers, self.models)
        self.steps = 0  # completed train_step calls

    def config(self) -> dict[str, Any]:
        return {"encoder": self.encoder.config(), "decoder": self.decoder.config(),
                "discriminator": self.discriminator.config(), "feature_layer": self.feature_layer,
                "gamma": self.gamma, "beta": self.beta,
                "optimizers": {name: optimizer.config() for name, optimizer in self.optimizers.items()}}

    @classmethod
    def from_config(cls, config: dict[str, Any], backend: Backend) -> "VAEGAN":
        models = {name: Sequential.from_config(config[name], backend)
                  for name in ("encoder", "decoder", "discriminator")}
        optimizers = {f"{name}_opt": optimizer_from_config(model, config["optimizers"][f"{name}_opt"])
                      for name, model in models.items()}
        return cls(**models, feature_layer=config["feature_layer"], gamma=config["gamma"],
                   beta=config["beta"], **optimizers)

    # ------------------------------------------------------------------ checked inputs

    def _data(self, x: Any) -> Any:
        """x as a backend array, refused unless (N >= 1, *shape)."""
        return data_batch(self.backend, x, self.decoder.output_shape)

    def _noise(self, name: str, value: Any, n: int) -> Any:
        """N(0, I) noise (n, latent_dim) from the backend's generator, or `value` checked."""
        return noise(self.backend, name, value, (n, self.latent_dim))

    # ------------------------------------------------------------------ the model

    def _split(self, h: Any) -> tuple[Any, Any]:
        return h[:, :self.latent_dim], h[:, self.latent_dim:]  # (N, L) views each

    def encode(self, x: Any) -> tuple[Any, Any]:
        """(mu, logvar) of q(z|x), each (N, latent_dim), in evaluation mode."""
        with evaluating(self.encoder):
            return self._split(self.encoder.forward(self._data(x)))

    def reconstruct(self, x: Any) -> Any:
        """Dec(mu(x)), (N, *shape) in data space, in evaluation mode."""
        mu, _ = self.encode(x)
        with evaluating(self.decoder):
            return self.decoder.forward(mu)

    def sample(self, n: int, z: Any = None) -> Any:
        """Dec(z), (n, *shape), for z ~ N(0, I) (or the given z), in evaluation mode."""
        z = self._noise("z", z, positive_int("n", n) if z is None else len(z))
        with evaluating(self.decoder):
            return self.decoder.forward(z)

    def _discriminate(self, x: Any) -> tuple[Any, Any]:
        """One discriminator pass: (Dis_l(x), D(x) logits (N, 1)). Every layer's forward
        returns a new array, so the features outlive the next pass."""
        features = self.discriminator.forward(x, until=self.feature_layer)  # (N, *feature_shape)
        logits = features
        for layer in self.discriminator.layers[self.feature_layer + 1:]:
            logits = layer.forward(logits)
        return features, logits

    def train_step(self, x: Any, eps: Any = None, z: Any = None) -> dict[str, float]:
        """One step on all three networks (the module docstring) for a data batch x (N, *shape).

        Args:
            eps: the reparameterisation noise (N, latent_dim); z: the prior codes z_p
                (N, latent_dim); each drawn from the backend's generator when None (eps first).

        Returns:
            The statistics named in `stat_names` (see the class docstring).
        """
        x = self._data(x)
        n, xp, objective = x.shape[0], self.backend.xp, self.objective
        E, G, D = self.encoder, self.decoder, self.discriminator
        eps, z_prior = self._noise("eps", eps, n), self._noise("z", z, n)
        h = E.forward(x)                                     # (N, 2 L)
        mu, logvar = self._split(h)                          # (N, L) each
        std = xp.exp(logvar / 2)                             # (N, L)
        x_tilde = G.forward(mu + std * eps)                  # X~ = Dec(z), (N, *shape)

        # D pass on X: the real term of L_D, and the target Dis_l(X).
        features_real, logits = self._discriminate(x)
        d_loss, grad = objective.discriminator_real(logits)
        D.backward(grad, input_grad=False, accumulate=False)  # writes D's grads
        d_real = objective.summary(logits)

        # D pass on X~: L_D's X~ term into D's parameters; L_dec_gan's X~ term and L_llike
        # into X~ through D, without D's parameters.
        features, logits = self._discriminate(x_tilde)
        residual = features - features_real                   # Dis_l(X~) - Dis_l(X)
        llike = 0.5 * float(xp.sum(residual * residual)) / n
        residual /= n                                         # dL_llike / dDis_l(X~)
        loss, grad = objective.discriminator_fake(logits)
        D.backward(grad, input_grad=False)
        d_loss, d_recon = d_loss + loss, objective.summary(logits)
        dec_gan, grad = objective.generator(logits)
        dx_gan = D.backward(grad, param_grads=False)          # dL_dec_gan / dX~
        dx_llike = D.backward(residual, param_grads=False, from_layer=self.feature_layer)  # dL_llike / dX~

        # Decoder pass on z: its parameters get gamma L_llike + L_dec_gan, z gets L_llike alone.
        dx_decoder = dx_llike * self.gamma
        dx_decoder += dx_gan
        G.backward(dx_decoder, input_grad=False, accumulate=False)  # writes the decoder's grads
        dz = G.backward(dx_llike, param_grads=False)          # dL_llike / dz, (N, L)

        # Encoder: L_llike through z = mu + std eps, plus beta L_prior (closed form).
        dh = posterior_gradient(xp, mu, std, eps, dz, self.beta / n)  # [dL/dmu, dL/dlogvar]
        E.backward(dh, input_grad=False, accumulate=False)

        # Decoder pass on z_p and D pass on X_p: L_D's X_p term into D's parameters,
        # L_dec_gan's X_p term through D into the decoder's parameters.
        logits = D.forward(G.forward(z_prior))                # D(X_p), (N, 1)
        loss, grad = objective.discriminator_fake(logits)
        D.backward(grad, input_grad=False)
        d_loss, d_fake = d_loss + loss, objective.summary(logits)
        loss, grad = objective.generator(logits)
        dec_gan = dec_gan + loss
        G.backward(D.backward(grad, param_grads=False), input_grad=False)

        prior = float(gaussian_kl(xp, mu, logvar).mean())
        for optimizer in self.optimizers.values():
            optimizer.step()
        self.steps += 1
        return {"prior": prior, "llike": llike, "d_loss": float(d_loss), "dec_gan": float(dec_gan),
                "d_real": d_real, "d_recon": d_recon, "d_fake": d_fake}
