"""Checkpoints: exact round trips on every backend, atomic writes, refusal of corrupt or
pickled files, and minigan 0.1's checkpoints (a committed fixture) loading, sampling and
resuming bit-exactly."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import minigan as mg
from minigan import checkpoint
from minigan.data import RING8
from minigan.gan import GAN
from minigan.run.loop import train
from minigan.run.config import RunConfig

V0_1 = Path(__file__).parent / "fixtures" / "v0_1"


def small_gan(backend_name="numpy", seed=0):
    be = mg.get_backend(backend_name, "float32", seed=seed)
    G = mg.Sequential([mg.Dense(4, 16), mg.ReLU(), mg.Dense(16, 2)], backend=be)
    D = mg.Sequential([mg.Dense(2, 16), mg.LeakyReLU(0.2), mg.Dense(16, 1)], backend=be)
    return GAN(G, D, loss="minimax", d_steps=2, label_smoothing=0.1,
               d_opt=mg.RMSProp(D, 1e-3), g_opt=mg.Adam(G, 1e-3, (0.5, 0.9)))


def run(gan, steps, offset=0):
    for step in range(offset, offset + steps):
        gan.train_step([RING8.sample(32, np.random.default_rng([step, i]), np.float32) for i in range(2)])


def test_round_trip_restores_everything(tmp_path, backend_name):
    gan = small_gan(backend_name)
    run(gan, 3)
    path = tmp_path / "ckpt.npz"
    gan.save(path, extra={"note": "hello"})
    loaded, extra = checkpoint.load_checkpoint(path)
    assert extra == {"note": "hello"}
    assert loaded.steps == 3 and loaded.loss == "minimax" and loaded.d_steps == 2
    assert loaded.objective.label_smoothing == 0.1
    assert type(loaded.d_opt) is mg.RMSProp and loaded.g_opt.beta2 == 0.9
    for a, b in ((gan.generator, loaded.generator), (gan.discriminator, loaded.discriminator)):
        assert np.array_equal(a.backend.to_numpy(a.params), b.backend.to_numpy(b.params))
        assert a.params.dtype == b.params.dtype and b.backend.name == backend_name
    host = gan.backend.to_numpy
    assert np.array_equal(host(gan.g_opt.m_scaled), host(loaded.g_opt.m_scaled))
    assert np.array_equal(host(gan.g_opt.v_scaled), host(loaded.g_opt.v_scaled))
    assert gan.g_opt.steps == loaded.g_opt.steps
    # The random stream continues where it stopped: the next steps are identical.
    run(gan, 2, offset=3)
    run(loaded, 2, offset=3)
    assert np.array_equal(host(gan.generator.params), host(loaded.generator.params))
    assert np.array_equal(host(gan.discriminator.params), host(loaded.discriminator.params))


def test_files_are_plain_npz_without_objects(tmp_path):
    gan = small_gan()
    gan.save(tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz", allow_pickle=False) as archive:
        assert all(archive[name].dtype != object for name in archive.files)
        config = json.loads(str(archive["config"]))
    assert config["format"] == 2 and config["family"] == "GAN" and config["minigan_version"] == mg.__version__
    assert config["model"]["generator"] == {
        "input_shape": [4], "layers": [{"type": "Dense", "in_features": 4, "out_features": 16, "init": "he"},
                                       {"type": "ReLU"},
                                       {"type": "Dense", "in_features": 16, "out_features": 2, "init": "he"}]}


def test_a_crash_mid_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    gan = small_gan()
    gan.save(path)
    before = path.read_bytes()
    run(gan, 1)

    def crash(file, **arrays):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        gan.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.npz"]


def test_missing_and_corrupt_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        GAN.load(tmp_path / "absent.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file")
    with pytest.raises(checkpoint.CheckpointError, match="not a readable checkpoint"):
        GAN.load(garbage)
    truncated = tmp_path / "truncated.npz"
    small_gan().save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(checkpoint.CheckpointError):
        GAN.load(truncated)


def test_pickled_objects_are_never_loaded(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, config=np.array([{"a": 1}], dtype=object))
    with pytest.raises(checkpoint.CheckpointError, match="not a readable checkpoint"):
        GAN.load(path)


@pytest.mark.parametrize("mutate, words", [
    (lambda arrays: arrays.pop("config"), "not a valid minigan checkpoint"),
    (lambda arrays: arrays.update(config=np.array("{not json")), "not a valid minigan checkpoint"),
    (lambda arrays: arrays.update(config=np.array(json.dumps({"format": 99}))), "unsupported checkpoint format"),
    (lambda arrays: arrays.pop("generator/0.W"), "missing"),
    (lambda arrays: arrays.update(config=np.array(json.dumps(
        {**json.loads(str(arrays["config"])), "family": "Diffusion"}))), "unknown model family 'Diffusion'"),
    (lambda arrays: arrays.update(config=np.array(json.dumps(json.loads(str(arrays["config"])) | {
        "model": json.loads(str(arrays["config"]))["model"] | {"generator": {"input_shape": [4], "layers": [
            {"type": "Teleport"}]}}}))), "unknown layer type 'Teleport'"),
])
def test_incomplete_checkpoints_are_refused(tmp_path, mutate, words):
    path = tmp_path / "c.npz"
    small_gan().save(path)
    arrays = checkpoint.read_npz(path)
    mutate(arrays)
    np.savez(path, **arrays)
    with pytest.raises(checkpoint.CheckpointError, match=words):
        GAN.load(path)




@pytest.mark.blas_kernels("Haswell")  # minigan 0.1 recorded its fixtures with these kernels
def test_a_minigan_0_1_checkpoint_loads_and_samples_as_it_did():
    """tests/fixtures/v0_1: written by minigan 0.1 (format 1), with the samples 0.1 drew from it."""
    expected = np.load(V0_1 / "ring8_expected.npz")
    gan, extra = checkpoint.load_checkpoint(V0_1 / "ring8_checkpoint.npz")
    assert isinstance(gan, GAN) and gan.steps == 20 and extra["config"]["data"] == "ring8"
    assert np.array_equal(gan.sample(5, expected["noise"]), expected["samples_at_20"])


@pytest.mark.blas_kernels("Haswell")  # minigan 0.1 recorded its fixtures with these kernels
def test_a_minigan_0_1_run_resumes_bit_exactly(tmp_path):
    """Resuming 0.1's step-20 checkpoint to step 30 gives the parameters 0.1 itself reached."""
    expected = np.load(V0_1 / "ring8_expected.npz")
    (tmp_path / "run").mkdir()
    shutil.copy(V0_1 / "ring8_checkpoint.npz", tmp_path / "run" / "checkpoint.npz")
    train(RunConfig(steps=30, progress=False, eval_samples=50), resume=str(tmp_path / "run"))
    gan, extra = checkpoint.load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert gan.steps == 30 and extra["base_lr"] == {"d_opt": 0.002, "g_opt": 0.002}
    assert np.array_equal(gan.generator.params, expected["generator_after_resume_to_30"])
    assert np.array_equal(gan.discriminator.params, expected["discriminator_after_resume_to_30"])
    assert checkpoint.read_config(tmp_path / "run" / "checkpoint.npz")["format"] == 2
