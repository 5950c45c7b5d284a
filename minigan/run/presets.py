"""Presets: named architectures and hyper-parameters, and `build_model`, which turns one
into a model family for a data set.

`seed` is the classic MLP of the original GAN tutorials (for 784-pixel images); the
others are tuned for one data set each and are what `minigan train --data NAME` uses
when no preset is named.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from ..backend import Backend
from ..gan import GAN
from ..model import Sequential
from ..objectives import OBJECTIVES
from ..optim import Adam, Optimizer, RMSProp
from ..vae import VAE
from ..vaegan import VAEGAN
from .architectures import ACTIVATIONS, OUTPUTS, dcgan_discriminator, dcgan_generator, mlp

ARCHITECTURES = ("mlp", "dcgan")
DATA_RANGES = ("unit", "symmetric")


@dataclass(frozen=True)
class Preset:
    """Architecture and optimisation settings of one training recipe."""

    latent_dim: int                          # width of the noise z (the VAE's code)
    generator_hidden: tuple[int, ...]        # hidden widths of G (dcgan: channels, widest first)
    discriminator_hidden: tuple[int, ...]    # hidden widths of D (dcgan: channels, narrowest first)
    family: str = "gan"                      # gan | vae | vaegan: the model family it builds
    encoder_hidden: tuple[int, ...] = ()     # hidden widths of a VAE's encoder (its decoder: generator_hidden)
    likelihood: str = "bernoulli"            # a VAE's p(x|z): bernoulli | gaussian | gaussian_learned
    beta: float = 1.0                        # a VAE's weight of the KL term
    gamma: float = 1.0                       # a VAE-GAN decoder's weight of the feature reconstruction
    architecture: str = "mlp"                # mlp | dcgan (images as (H, W, C))
    data_range: str = "unit"                 # unit: pixels in [0, 1]; symmetric: in [-1, 1] (tanh output)
    generator_activation: str = "relu"       # key of ACTIVATIONS
    discriminator_activation: str = "leaky_relu"
    discriminator_batch_norm: bool = True    # dcgan: BatchNorm in D (never under wgan-gp)
    discriminator_mlp_head: tuple[int, ...] = ()  # dcgan: hidden widths of an MLP head beside D's convolutions
    output: str = "linear"                   # G's output layer: linear (2-D data) or sigmoid ([0, 1] images)
    optimizer: str = "adam"                  # adam | rmsprop | paper (the loss's paper optimizer)
    lr: float | None = 2e-4                  # learning rate of every network; None: the paper's
    lr_d: float | None = None                # the discriminator's learning rate; None: lr
    betas: tuple[float, float] = (0.5, 0.999)  # Adam's betas
    lr_decay: str = "none"                   # none | linear (to 0 over the run)
    batch_size: int = 64
    steps: int = 5000                        # generator steps
    loss: str = "non_saturating"             # a name in minigan.objectives.OBJECTIVES
    d_steps: int | None = 1                  # discriminator steps per generator step; None: the loss's
    pack: int = 1                            # PacGAN packing degree
    label_smoothing: float = 0.0
    init: str = "he"
    ema_decay: float = 0.0                   # a GAN's moving average of G's weights for sampling (0: off)
    blas_threads: int | None = 1             # BLAS threads for this recipe's products (docs/benchmarks.md)

    def with_overrides(self, **overrides: Any) -> "Preset":
        """A copy with the non-None `overrides` applied."""
        return replace(self, **{key: value for key, value in overrides.items() if value is not None})


PRESETS: dict[str, Preset] = {
    # Goodfellow-style MLP of the classic tutorials: G 100 -> 256 ReLU -> 784 sigmoid,
    # D 784 -> 256 ReLU -> 1, Adam(2e-4, beta1 0.5).
    "seed": Preset(latent_dim=100, generator_hidden=(256,), discriminator_hidden=(256,),
                   discriminator_activation="relu", output="sigmoid", batch_size=64, steps=10000),
    # 2-D mixtures: a 2-D latent, three hidden layers of 128 on both sides, a high
    # learning rate decayed linearly to 0 (the decay is what sharpens the modes).
    "ring8": Preset(latent_dim=2, generator_hidden=(128, 128, 128), discriminator_hidden=(128, 128, 128),
                    lr=2e-3, lr_decay="linear", batch_size=256, steps=4000),
    "grid25": Preset(latent_dim=2, generator_hidden=(128, 128, 128), discriminator_hidden=(128, 128, 128),
                     lr=2e-3, betas=(0.0, 0.99), lr_decay="linear", batch_size=256, steps=10000),
    # The best configurations measured on the 2-D benchmarks (`--preset best`; numbers in
    # docs/quality.md). ring8: a 1-D latent (a ring is one-dimensional: fewer mode boundaries, fewer
    # samples on bridges), batch 1024, packing 2. grid25: packing 2 covers every mode; a
    # 4x256 generator trained for 30k steps makes the jumps between modes steep enough that
    # few samples land between them (15k steps with 3x256 left 14% there).
    "ring8-best": Preset(latent_dim=1, generator_hidden=(128, 128, 128), discriminator_hidden=(128, 128, 128),
                         lr=2e-3, lr_decay="linear", batch_size=1024, steps=10000, pack=2),
    "grid25-best": Preset(latent_dim=2, generator_hidden=(256, 256, 256, 256), discriminator_hidden=(128, 128, 128),
                          lr=2e-3, betas=(0.0, 0.99), lr_decay="linear", batch_size=256, steps=30000, pack=2),
    # Images: sigmoid outputs for pixels in [0, 1]; the digits preset takes two D steps per G step.
    # idx: a deeper leaky-ReLU generator (256-512-1024) is what brings shoes and bags (all ten
    # classes; the 256-512 ReLU generator covered seven), with the learning rate decayed to 0.
    "digits": Preset(latent_dim=32, generator_hidden=(256, 256), discriminator_hidden=(256,),
                     output="sigmoid", batch_size=64, steps=10000, d_steps=2),
    "idx": Preset(latent_dim=100, generator_hidden=(256, 512, 1024), discriminator_hidden=(512, 256),
                  generator_activation="leaky_relu", output="sigmoid", lr_decay="linear",
                  batch_size=64, steps=15000),
    # The VAE of pytorch/examples: encoder 784-400-(20, 20), decoder 20-400-784 (logits), ReLU,
    # Bernoulli likelihood, Adam 1e-3, batch 128, 10 epochs of Fashion-MNIST's 60,000 images.
    "vae": Preset(latent_dim=20, encoder_hidden=(400,), generator_hidden=(400,), discriminator_hidden=(),
                  family="vae", generator_activation="relu", lr=1e-3, betas=(0.9, 0.999),
                  batch_size=128, steps=4690),
    # The same VAE with DCGAN-shaped networks: encoder Conv 1->32 -> LeakyReLU -> Conv 32->64 ->
    # BatchNorm LeakyReLU -> Dense -> (20, 20); decoder Dense -> 7x7x64 -> BatchNorm ReLU ->
    # ConvT 64->32 -> BatchNorm ReLU -> ConvT 32->1 (logits); pixels in [0, 1].
    "vae-conv": Preset(latent_dim=20, encoder_hidden=(32, 64), generator_hidden=(64, 32), discriminator_hidden=(),
                       family="vae", architecture="dcgan", init="normal", lr=1e-3, betas=(0.9, 0.999),
                       batch_size=128, steps=4690),
    # VAE-GAN (Larsen et al. 2016) on DCGAN's networks: a conv encoder (as D, 2 * 32 outputs), the
    # DCGAN generator as decoder, DCGAN's discriminator, features after its last LeakyReLU.
    "vaegan": Preset(latent_dim=32, encoder_hidden=(64, 128), generator_hidden=(128, 64),
                     discriminator_hidden=(64, 128), family="vaegan", architecture="dcgan",
                     data_range="symmetric", output="tanh", init="normal", batch_size=64, steps=12000,
                     gamma=0.01),  # FD 14.5 / 9.4 / 5.5 after 6,000 / 9,000 / 12,000 steps (docs/quality.md)
    # dcgan-paper: DCGAN (Radford et al. 2015) at 28x28, channels-last: G z -> Dense -> 7x7x128 ->
    # BatchNorm ReLU -> ConvT 128->64 (k4 s2 p1) -> BatchNorm ReLU -> ConvT 64->1 -> tanh; D Conv
    # 1->64 -> LeakyReLU -> Conv 64->128 -> BatchNorm LeakyReLU -> Dense -> 1; weights N(0, 0.02),
    # Adam (0.5, 0.999). Adam 1e-3, five times the paper's 2e-4: it reaches in 4,000 steps the
    # Fréchet distance that 2e-4 reaches in 10,000-12,000. 25,000 steps: 20 minutes on two
    # processes with --sync-bn, Fréchet distance 3.69 ± 0.67. Decaying the learning rate, a
    # two-time-scale rate or a weight average of G did not help (docs/quality.md, "DCGAN"). It was
    # the dcgan preset until the recipe below (dcgan) met the target; the step benchmarks against
    # PyTorch time it.
    "dcgan-paper": Preset(latent_dim=100, generator_hidden=(128, 64), discriminator_hidden=(64, 128),
                          architecture="dcgan", data_range="symmetric", output="tanh", init="normal",
                          lr=1e-3, batch_size=64, steps=25000),
}
# The dcgan-paper preset with a second head in D: an MLP (784-512-256-1, LeakyReLU 0.2, as the idx
# preset's D) beside the convolutions, on the same image (`Branches`; each loss the mean of
# the two heads'). G must satisfy both: the MLP GAN drew the bags the DCGAN drew worst, the
# DCGAN the sandals the MLP drew worst. Steps take 15% longer than dcgan-paper's on two processes:
# 20,000 steps, about 17 minutes where dcgan-paper's 25,000 take 20 (docs/quality.md).
PRESETS["dcgan-mlp-head"] = PRESETS["dcgan-paper"].with_overrides(discriminator_mlp_head=(512, 256), steps=20000)
# dcgan-mlp-head with G's 14x14 stage twice as wide (ConvT 128->128, then 128->1), sampled from
# a moving average of G's weights (decay 0.999) with BatchNorm statistics of its own. The wider
# stage alone ended on dcgan-paper's plateau (4.13 against 4.51 after 8,000 steps); beside the MLP head
# it is 1.75 against 2.95 (seed 0), and 1.60 ± 0.04 over three seeds after 10,000 steps, the
# average 1.52 ± 0.20 (docs/quality.md, "The best recipe", "A weight average of G"): dcgan-best
# until D had a third convolution. D at half G's rate (--lr-d 5e-4) was level: 1.51 ± 0.34.
PRESETS["dcgan-wide-g"] = PRESETS["dcgan-mlp-head"].with_overrides(generator_hidden=(128, 128), steps=10000,
                                                                   ema_decay=0.999)
# dcgan: the best DCGAN measured, the final recipe. dcgan-wide-g with a third convolution in D
# (128->256, 7x7 -> 3x3, BatchNorm, LeakyReLU). Each step is about 1.2x as long, and it needs
# 6,000 steps where dcgan-wide-g needed 10,000: 16-17 minutes on two processes with --sync-bn,
# Fréchet distance 0.86 ± 0.10 over three seeds, the bag's distance about halved
# (docs/quality.md, "A third convolution in D"). It was first named dcgan-best, which stays a
# name for it (earlier commands and checkpoints).
PRESETS["dcgan"] = PRESETS["dcgan-wide-g"].with_overrides(discriminator_hidden=(64, 128, 256), steps=6000)
PRESETS["dcgan-best"] = PRESETS["dcgan"]


def build_gan(preset: Preset, data_shape: tuple[int, ...], backend: Backend) -> GAN:
    """Builds G (latent -> one example of `data_shape`), D (pack examples -> 1 output) and
    their optimizers. An MLP reads and writes flat examples; a DCGAN channels-last images."""
    for name, table in (("generator_activation", ACTIVATIONS), ("discriminator_activation", ACTIVATIONS),
                        ("output", OUTPUTS), ("architecture", ARCHITECTURES), ("data_range", DATA_RANGES)):
        if getattr(preset, name) not in table:
            raise ValueError(f"{name} must be one of {sorted(table)}, got {getattr(preset, name)!r}")
    if preset.architecture == "dcgan":
        if len(data_shape) != 3:
            raise ValueError(f"the dcgan architecture needs image data (H, W, C), got examples of shape {data_shape}")
        generator = dcgan_generator(preset.latent_dim, preset.generator_hidden, data_shape, preset.output,
                                    preset.init, backend)
        packed = (*data_shape[:2], data_shape[2] * preset.pack)
        discriminator = dcgan_discriminator(packed, preset.discriminator_hidden, preset.init, backend,
                                            batch_norm=preset.discriminator_batch_norm and preset.loss != "wgan-gp",
                                            mlp_head=preset.discriminator_mlp_head)
    else:
        features = math.prod(data_shape)
        generator = mlp([preset.latent_dim, *preset.generator_hidden, features],
                        preset.generator_activation, preset.output, preset.init, backend)
        discriminator = mlp([features * preset.pack, *preset.discriminator_hidden, 1],
                            preset.discriminator_activation, "linear", preset.init, backend)
    loss_options = {"label_smoothing": preset.label_smoothing} if preset.label_smoothing else {}
    return GAN(generator, discriminator, loss=preset.loss, d_opt=_optimizer(preset, discriminator, preset.lr_d),
               g_opt=_optimizer(preset, generator), d_steps=preset.d_steps, pack=preset.pack,
               ema_decay=preset.ema_decay, **loss_options)


def _optimizer(preset: Preset, model: Sequential, lr: float | None = None) -> Optimizer:
    """The preset's optimizer for `model`, at learning rate `lr` (None: the preset's)."""
    lr = preset.lr if lr is None else lr
    if preset.optimizer == "paper":
        optimizer = OBJECTIVES[preset.loss]().make_optimizer(model)
        optimizer.lr = optimizer.lr if lr is None else lr
        return optimizer
    if lr is None:
        raise ValueError(f"optimizer {preset.optimizer!r} needs a learning rate")
    if preset.optimizer == "adam":
        return Adam(model, lr=lr, betas=preset.betas)
    if preset.optimizer == "rmsprop":
        return RMSProp(model, lr=lr)
    raise ValueError(f"optimizer must be adam, rmsprop or paper, got {preset.optimizer!r}")


def build_vae(preset: Preset, data_shape: tuple[int, ...], backend: Backend) -> VAE:
    """A VAE, each network with its optimizer. MLP: encoder features -> hidden -> 2 * latent
    (mu, logvar), decoder latent -> hidden -> features (logits or means, shaped like the
    data). dcgan architecture, on images (H, W, C): the encoder shaped like DCGAN's
    discriminator with 2 * latent outputs, the DCGAN generator (linear output) as decoder."""
    if preset.architecture == "dcgan":
        if len(data_shape) != 3:
            raise ValueError(f"a convolutional VAE needs image data (H, W, C), got examples of shape {data_shape}")
        encoder = dcgan_discriminator(data_shape, preset.encoder_hidden, preset.init, backend,
                                      outputs=2 * preset.latent_dim)
        decoder = dcgan_generator(preset.latent_dim, preset.generator_hidden, data_shape, "linear",
                                  preset.init, backend)
    else:
        features = math.prod(data_shape)
        encoder = mlp([features, *preset.encoder_hidden, 2 * preset.latent_dim], preset.generator_activation,
                      "linear", preset.init, backend)
        decoder = mlp([preset.latent_dim, *preset.generator_hidden, features], preset.generator_activation,
                      "linear", preset.init, backend)
    return VAE(encoder, decoder, likelihood=preset.likelihood, beta=preset.beta,
               encoder_opt=_optimizer(preset, encoder), decoder_opt=_optimizer(preset, decoder))


def build_vaegan(preset: Preset, data_shape: tuple[int, ...], backend: Backend) -> VAEGAN:
    """A convolutional VAE-GAN on images (H, W, C): encoder and discriminator shaped like
    DCGAN's discriminator, the DCGAN generator as decoder; the reconstruction is measured
    after the discriminator's last LeakyReLU."""
    if preset.architecture != "dcgan" or len(data_shape) != 3:
        raise ValueError(f"the vaegan preset needs the dcgan architecture and image data, got "
                         f"{preset.architecture} and examples of shape {data_shape}")
    encoder = dcgan_discriminator(data_shape, preset.encoder_hidden, preset.init, backend,
                                  outputs=2 * preset.latent_dim)
    decoder = dcgan_generator(preset.latent_dim, preset.generator_hidden, data_shape, preset.output,
                              preset.init, backend)
    discriminator = dcgan_discriminator(data_shape, preset.discriminator_hidden, preset.init, backend)
    feature_layer = len(discriminator.layers) - 3  # the LeakyReLU before Flatten and the logit
    return VAEGAN(encoder, decoder, discriminator, feature_layer, gamma=preset.gamma, beta=preset.beta,
                  encoder_opt=_optimizer(preset, encoder), decoder_opt=_optimizer(preset, decoder),
                  discriminator_opt=_optimizer(preset, discriminator, preset.lr_d))


def build_model(family: str, preset: Preset, data_shape: tuple[int, ...], backend: Backend) -> Any:
    """The model family `family` ("gan", "vae" or "vaegan") built from `preset` for examples
    of `data_shape`."""
    builders = {"gan": build_gan, "vae": build_vae, "vaegan": build_vaegan}
    if family not in builders:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(builders)}")
    return builders[family](preset, data_shape, backend)
