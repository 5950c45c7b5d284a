"""Checkpoints: one `.npz` file holding any model family, written atomically, loaded
without pickle, and every older format still readable.

Format 2 contents: the family's `state_dict()` (every network's parameters and buffers,
"generator/0.W", and every optimizer's state, "g_opt/m_scaled") and "config", a JSON
string: the family's name and `config()` (architectures, loss, optimizer settings), the
backend, the step count, the random generator's state, the minigan version that wrote
it, and any caller data (`extra`, e.g. a training run's configuration). Format 1 (minigan
0.1, GANs only) has the same arrays and a flatter JSON, upgraded on load.
The file is written to a temporary name in the same directory and renamed over the
target, so a crash mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .backend import Backend, get_backend
from .files import atomic_write
from .version import __version__

FORMAT_VERSION = 2
FAMILIES: dict[str, Any] = {}  # family name -> class, filled by `Trainable` subclasses


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


def save_checkpoint(path: str | os.PathLike, model: Any, extra: dict | None = None) -> Path:
    """Saves a model family instance (and the JSON-serialisable `extra`) to `path`."""
    backend = model.backend
    config = {
        "format": FORMAT_VERSION,
        "minigan_version": __version__,
        "family": type(model).__name__,
        "model": model.config(),
        "backend": {"name": backend.name, "dtype": backend.dtype.name, "seed": backend.seed},
        "steps": model.steps,
        "rng_state": backend.rng_state(),
        "extra": extra or {},
    }
    return atomic_savez(path, {"config": np.array(json.dumps(config)), **model.state_dict()})


def _upgrade_format_1(config: dict[str, Any]) -> dict[str, Any]:
    """A minigan 0.1 GAN checkpoint's JSON in format 2 (its arrays are named alike)."""
    gan_keys = ("generator", "discriminator", "loss", "loss_options", "latent_dim", "d_steps", "pack")
    model = {key: config[key] for key in gan_keys}
    model["optimizers"] = {"g_opt": config["g_opt"], "d_opt": config["d_opt"]}
    return {"format": FORMAT_VERSION, "minigan_version": "0.1.0", "family": "GAN", "model": model,
            **{key: config[key] for key in ("backend", "steps", "rng_state", "extra")}}


def read_config(path: str | os.PathLike, arrays: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """The checkpoint's JSON record in the current format (upgraded from older ones)."""
    arrays = read_npz(path) if arrays is None else arrays
    try:
        config = json.loads(str(arrays["config"]))
        version = config.get("format")
        if version == 1:
            config = _upgrade_format_1(config)
        elif version != FORMAT_VERSION:
            raise CheckpointError(f"{path}: unsupported checkpoint format {version!r} "
                                  f"(this minigan reads formats 1 and {FORMAT_VERSION})")
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not a valid minigan checkpoint ({error!r})") from None
    return config


def load_checkpoint(path: str | os.PathLike, backend: Backend | None = None) -> tuple[Any, dict]:
    """Rebuilds the model family instance saved at `path`.

    Args:
        backend: where to put it; by default the recorded backend (name, dtype, seed).

    Returns:
        (model, extra): the model with parameters, buffers, optimizer state, step count
        and random state restored, and the caller data saved with it.
    """
    arrays = read_npz(path)
    config = read_config(path, arrays)
    family = FAMILIES.get(config.get("family"))
    if family is None:
        raise CheckpointError(f"{path}: unknown model family {config.get('family')!r}; "
                              f"known: {sorted(FAMILIES)}")
    try:
        if backend is None:
            recorded = config["backend"]
            backend = get_backend(recorded["name"], recorded["dtype"], recorded["seed"])
        model = family.from_config(config["model"], backend)
        model.load_state_dict({name: value for name, value in arrays.items() if name != "config"})
        model.steps = int(config["steps"])
        backend.set_rng_state(config["rng_state"])
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(f"{path} is not a valid minigan checkpoint ({error})") from None
    return model, config["extra"]
