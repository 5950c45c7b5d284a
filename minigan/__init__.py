"""minigan: a from-scratch GAN library with hand-written forward and backward passes."""
from . import gradcheck
from .backend import Backend, BackendUnavailableError, cuda_available, get_backend
from .gan import GAN
from .layers import Dense, Layer, LeakyReLU, ReLU, Sigmoid, Tanh
from .losses import BCEWithLogits, SoftmaxCrossEntropy
from .model import Sequential
from .optim import SGD, Adam, Optimizer, RMSProp
from .penalty import gradient_penalty

__version__ = "0.1.0"

__all__ = [
    "Adam", "BCEWithLogits", "GAN", "Backend", "BackendUnavailableError", "Dense", "Layer",
    "LeakyReLU", "Optimizer", "RMSProp", "ReLU", "SGD", "Sequential", "Sigmoid",
    "SoftmaxCrossEntropy", "Tanh", "cuda_available", "get_backend", "gradcheck", "gradient_penalty",
]
