"""minigan: a from-scratch generative-model library with hand-written forward and backward passes."""
from . import gradcheck
from .backend import Backend, BackendUnavailableError, cuda_available, get_backend
from .branches import Branches
from .conv import Conv2d, ConvTranspose2d
from .gan import GAN
from .layers import Dense, Flatten, Layer, LeakyReLU, ReLU, Reshape, Sigmoid, Tanh
from .losses import BCEWithLogits, SoftmaxCrossEntropy
from .model import Sequential
from .norm import BatchNorm
from .optim import SGD, Adam, Optimizer, RMSProp
from .penalty import gradient_penalty
from .trainable import Trainable
from .vae import VAE
from .vaegan import VAEGAN
from .version import __version__

__all__ = [
    "Adam", "BCEWithLogits", "GAN", "Backend", "BackendUnavailableError", "BatchNorm", "Branches", "Conv2d", "ConvTranspose2d", "Dense", "Flatten", "Layer",
    "LeakyReLU", "Optimizer", "RMSProp", "ReLU", "Reshape", "SGD", "Sequential", "Sigmoid",
    "SoftmaxCrossEntropy", "Tanh", "Trainable", "VAE", "VAEGAN", "__version__", "cuda_available", "get_backend",
    "gradcheck", "gradient_penalty",
]
