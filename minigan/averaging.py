"""Exponential moving averages of a model's weights: a shadow copy of a network whose
parameters and buffers follow the trained ones, average = decay * average + (1 - decay) *
current, after every update (as in Yazıcı et al. 2019, "The unusual effectiveness of
averaging in GAN training"). With one flat array per model the update is two in-place
vector operations per array."""
from __future__ import annotations

from .model import Sequential


def shadow_copy(model: Sequential) -> Sequential:
    """A new model of the same architecture and backend holding a copy of `model`'s parameters
    and buffers; building it leaves the backend's random stream where it was."""
    backend = model.backend
    state = backend.rng_state()
    copy = Sequential.from_config(model.config(), backend)
    backend.set_rng_state(state)
    copy.params[...] = model.params
    copy.buffers[...] = model.buffers
    copy.train(model.training)
    return copy


def update_average(average: Sequential, model: Sequential, decay: float) -> None:
    """average += (1 - decay) * (model - average), for the parameters and the buffers."""
    for mean, current in ((average.params, model.params), (average.buffers, model.buffers)):
        step = current - mean  # (P,)
        step *= 1 - decay
        mean += step
