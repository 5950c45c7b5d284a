"""The networks the presets build: multilayer perceptrons, and DCGAN's convolutional
generator and discriminator (Radford et al. 2015) for channels-last images."""
from __future__ import annotations

import math
from typing import Callable

from ..backend import Backend
from ..branches import Branches
from ..conv import Conv2d, ConvTranspose2d
from ..layers import Dense, Flatten, Layer, LeakyReLU, ReLU, Reshape, Sigmoid, Tanh
from ..model import Sequential, chain_shapes
from ..norm import BatchNorm

ACTIVATIONS: dict[str, Callable[[], Layer]] = {"relu": ReLU, "leaky_relu": lambda: LeakyReLU(0.2),
                                               "tanh": Tanh}
OUTPUTS: dict[str, Callable[[], Layer] | None] = {"linear": None, "sigmoid": Sigmoid, "tanh": Tanh}


def mlp(sizes: list[int], activation: str, output: str, init: str, backend: Backend) -> Sequential:
    """Dense layers of the given widths with `activation` between them and `output` after."""
    return Sequential(mlp_layers(sizes, activation, output, init), backend=backend)


def mlp_layers(sizes: list[int], activation: str, output: str, init: str) -> list[Layer]:
    """The layers of `mlp`, unwrapped (e.g. for one branch of a `Branches`)."""
    layers: list[Layer] = []
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(n_in, n_out, init=init))
        if index < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    if OUTPUTS[output] is not None:
        layers.append(OUTPUTS[output]())
    return layers


def _upsamplings(image_shape: tuple[int, ...], stages: int) -> tuple[int, int]:
    """The (height, width) a generator starts from so that `stages` stride-2 upsamplings
    reach the image; ValueError when the image size is not divisible by 2^stages."""
    height, width = image_shape[:2]
    factor = 2 ** stages
    if height % factor or width % factor:
        raise ValueError(f"a DCGAN with {stages} stride-2 stages needs image sides divisible by "
                         f"{factor}, got {height}x{width}")
    return height // factor, width // factor


def dcgan_generator(latent_dim: int, channels: tuple[int, ...], image_shape: tuple[int, int, int],
                    output: str, init: str, backend: Backend) -> Sequential:
    """z -> Dense -> (h, w, channels[0]) -> BatchNorm ReLU -> [ConvT k4 s2 p1 -> BatchNorm ReLU]
    -> ConvT k4 s2 p1 to the image's channels -> output; one upsampling per entry of `channels`."""
    height, width = _upsamplings(image_shape, len(channels))
    layers: list[Layer] = [Dense(latent_dim, height * width * channels[0], init=init),
                           Reshape((height, width, channels[0])), BatchNorm(channels[0], init="normal"), ReLU()]
    widths = [*channels, image_shape[2]]
    for index, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, init=init))
        if index < len(widths) - 2:
            layers += [BatchNorm(c_out, init="normal"), ReLU()]
    if OUTPUTS[output] is not None:
        layers.append(OUTPUTS[output]())
    return Sequential(layers, backend=backend)


def dcgan_discriminator(image_shape: tuple[int, int, int], channels: tuple[int, ...], init: str,
                        backend: Backend, batch_norm: bool = True, outputs: int = 1,
                        mlp_head: tuple[int, ...] = ()) -> Sequential:
    """[Conv k4 s2 p1 -> (BatchNorm after the first) LeakyReLU 0.2] per entry of `channels`
    -> Flatten -> Dense -> `outputs` values (one logit; a VAE encoder's 2 * latent). Without
    `batch_norm` (WGAN-GP's critic) no BatchNorm. With `mlp_head` widths, a second head sits
    beside the convolutional one (`Branches`): Flatten -> [Dense -> LeakyReLU 0.2] per width ->
    Dense -> `outputs`, on the same image; their outputs are joined, (N, 2 * outputs): two logits."""
    convolutional = _dcgan_discriminator_layers(image_shape, channels, init, batch_norm, outputs)
    if not mlp_head:
        return Sequential(convolutional, backend=backend, input_shape=image_shape)
    perceptron = [Flatten(), *mlp_layers([math.prod(image_shape), *mlp_head, outputs], "leaky_relu", "linear", init)]
    return Sequential([Branches([convolutional, perceptron])], backend=backend, input_shape=image_shape)


def _dcgan_discriminator_layers(image_shape: tuple[int, int, int], channels: tuple[int, ...], init: str,
                                batch_norm: bool, outputs: int) -> list[Layer]:
    layers: list[Layer] = []
    widths = [image_shape[2], *channels]
    for index, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(Conv2d(c_in, c_out, 4, stride=2, padding=1, init=init))
        if index > 0 and batch_norm:
            layers.append(BatchNorm(c_out, init="normal"))
        layers.append(LeakyReLU(0.2))
    features = math.prod(chain_shapes(layers, image_shape)[-1])  # before Flatten
    return [*layers, Flatten(), Dense(features, outputs, init=init)]
