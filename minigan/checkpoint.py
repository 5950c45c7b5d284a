"""Checkpoints: one `.npz` file holding a whole GAN, written atomically, loaded without pickle.

Contents: both models' parameters ("generator/0.W", ...), both optimizers' state
("g_opt/m_scaled", ...), and "config", a JSON string with the architectures, the loss, the
optimizer hyper-parameters, the backend, the step count, the random generator's state
and any caller data (`extra`, e.g. a training run's configuration and data position).
The file is written to a temporary name in the same directory and renamed over the
target, so a crash mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from .backend import Backend, get_backend
from .files import atomic_write
from .gan import GAN
from .model import Sequential
from .optim import optimizer_from_config

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or not a minigan checkpoint."""


def atomic_savez(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Writes `arrays` to `path` as .npz via a temporary file and an atomic rename."""
    return atomic_write(path, lambda file: np.savez(file, **arrays))


def read_npz(path: str | os.PathLike, what: str = "checkpoint") -> dict[str, np.ndarray]:
    """Reads every array of an .npz file (no pickle); clear errors for missing or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as error:
        raise CheckpointError(f"{path} is not a readable {what} ({error})") from None


def save_checkpoint(path: str | os.PathLike, gan: GAN, extra: dict | None = None) -> Path:
    """Saves `gan` (and the JSON-serialisable `extra`) to `path`."""
    backend = gan.backend
    config = {
        "format": FORMAT_VERSION,
        "generator": gan.generator.config(),
        "discriminator": gan.discriminator.config(),
        "loss": gan.loss,
        "loss_options": gan.objective.options(),
        "latent_dim": gan.latent_dim,
        "d_steps": gan.d_steps,
        "pack": gan.pack,
        "g_opt": gan.g_opt.config(),
        "d_opt": gan.d_opt.config(),
        "backend": {"name": backend.name, "dtype": backend.dtype.name, "seed": backend.seed},
        "steps": gan.steps,
        "rng_state": backend.rng_state(),
        "extra": extra or {},
    }
    arrays = {"config": np.array(json.dumps(config))}
    for prefix, state in (("generator", gan.generator.state_dict()),
                          ("discriminator", gan.discriminator.state_dict()),
                          ("g_opt", gan.g_opt.state_dict()), ("d_opt", gan.d_opt.state_dict())):
        arrays.update({f"{prefix}/{name}": value for name, value in state.items()})
    return atomic_savez(path, arrays)


def _section(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {name[len(prefix) + 1:]: value for name, value in arrays.items()
            if name.startswith(prefix + "/")}


def load_checkpoint(path: str | os.PathLike, backend: Backend | None = None) -> tuple[GAN, dict]:
    """Rebuilds the GAN saved at `path`.

    Args:
        backend: where to put it; by default the recorded backend (name, dtype, seed).

    Returns:
        (gan, extra): the GAN with parameters, optimizer state, step count and random
        state restored, and the caller data saved with it.
    """
    arrays = read_npz(path)
    try:
        config = json.loads(str(arrays["config"]))
        if config.get("format") != FORMAT_VERSION:
            raise CheckpointError(f"{path}: unsupported checkpoint format {config.get('format')!r}")
        if backend is None:
            recorded = config["backend"]
            backend = get_backend(recorded["name"], recorded["dtype"], recorded["seed"])
        generator = Sequential.from_config(config["generator"], backend)
        discriminator = Sequential.from_config(config["discriminator"], backend)
        gan = GAN(generator, discriminator, loss=config["loss"], latent_dim=config["latent_dim"],
                  d_opt=optimizer_from_config(discriminator, config["d_opt"]),
                  g_opt=optimizer_from_config(generator, config["g_opt"]),
                  d_steps=config["d_steps"], pack=config["pack"], **config["loss_options"])
        generator.load_state_dict(_section(arrays, "generator"))
        discriminator.load_state_dict(_section(arrays, "discriminator"))
        gan.g_opt.load_state_dict(_section(arrays, "g_opt"))
        gan.d_opt.load_state_dict(_section(arrays, "d_opt"))
    except (KeyError, TypeError, json.JSONDecodeError, ValueError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(f"{path} is not a valid minigan checkpoint ({error})") from None
    gan.steps = int(config["steps"])
    backend.set_rng_state(config["rng_state"])
    return gan, config["extra"]
