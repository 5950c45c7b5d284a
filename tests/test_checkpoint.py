"""Checkpoints: exact round trips, atomic writes, refusal of corrupt or pickled files,
and bit-exact resumption of a training run."""
import dataclasses
import json
import os

import numpy as np
import pytest

import minigan as mg
from minigan import checkpoint, presets
from minigan import train as train_module
from minigan.data import RING8
from minigan.gan import GAN
from minigan.train import TrainConfig, train


def small_gan(seed=0):
    be = mg.get_backend("numpy", "float32", seed=seed)
    G = mg.Sequential([mg.Dense(4, 16), mg.ReLU(), mg.Dense(16, 2)], backend=be)
    D = mg.Sequential([mg.Dense(2, 16), mg.LeakyReLU(0.2), mg.Dense(16, 1)], backend=be)
    return GAN(G, D, loss="minimax", d_steps=2, label_smoothing=0.1,
               d_opt=mg.RMSProp(D, 1e-3), g_opt=mg.Adam(G, 1e-3, (0.5, 0.9)))


def run(gan, steps, offset=0):
    for step in range(offset, offset + steps):
        gan.train_step([RING8.sample(32, np.random.default_rng([step, i]), np.float32) for i in range(2)])


def test_round_trip_restores_everything(tmp_path):
    gan = small_gan()
    run(gan, 3)
    path = tmp_path / "ckpt.npz"
    gan.save(path, extra={"note": "hello"})
    loaded, extra = checkpoint.load_checkpoint(path)
    assert extra == {"note": "hello"}
    assert loaded.steps == 3 and loaded.loss == "minimax" and loaded.d_steps == 2
    assert loaded.objective.label_smoothing == 0.1
    assert type(loaded.d_opt) is mg.RMSProp and loaded.g_opt.beta2 == 0.9
    for a, b in ((gan.generator, loaded.generator), (gan.discriminator, loaded.discriminator)):
        assert np.array_equal(a.params, b.params) and a.params.dtype == b.params.dtype
    assert np.array_equal(gan.g_opt.m_scaled, loaded.g_opt.m_scaled) and gan.g_opt.steps == loaded.g_opt.steps
    assert np.array_equal(gan.g_opt.v_scaled, loaded.g_opt.v_scaled)
    # The random stream continues where it stopped: the next steps are identical.
    run(gan, 2, offset=3)
    run(loaded, 2, offset=3)
    assert np.array_equal(gan.generator.params, loaded.generator.params)
    assert np.array_equal(gan.discriminator.params, loaded.discriminator.params)


def test_files_are_plain_npz_without_objects(tmp_path):
    gan = small_gan()
    gan.save(tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz", allow_pickle=False) as archive:
        assert all(archive[name].dtype != object for name in archive.files)
        config = json.loads(str(archive["config"]))
    assert config["generator"][0] == {"type": "Dense", "in_features": 4, "out_features": 16, "init": "he"}


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
])
def test_incomplete_checkpoints_are_refused(tmp_path, mutate, words):
    path = tmp_path / "c.npz"
    small_gan().save(path)
    arrays = checkpoint.read_npz(path)
    mutate(arrays)
    np.savez(path, **arrays)
    with pytest.raises(checkpoint.CheckpointError, match=words):
        GAN.load(path)


@pytest.mark.parametrize("data", ["ring8", "digits"])
def test_resuming_after_a_crash_is_bit_identical(tmp_path, monkeypatch, data):
    """A run stopped right after its checkpoint at step 7 and resumed ends exactly where an
    uninterrupted 14-step run ends (ring8's preset decays the learning rate, so this also
    checks that the schedule resumes correctly)."""
    if data == "digits":
        pytest.importorskip("sklearn")
    common = dict(data=data, steps=14, batch_size=16, progress=False, eval_samples=50, log_every=1,
                  checkpoint_every=7)
    train(TrainConfig(out=str(tmp_path / "straight"), **common))

    write_history = train_module._write_history

    def write_then_crash(*args):
        write_history(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_write_history", write_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(out=str(tmp_path / "crashed"), **common))
    monkeypatch.undo()
    assert checkpoint.load_checkpoint(tmp_path / "crashed" / "checkpoint.npz")[0].steps == 7
    train(TrainConfig(progress=False), resume=str(tmp_path / "crashed"))

    straight = checkpoint.read_npz(tmp_path / "straight" / "checkpoint.npz")
    resumed = checkpoint.read_npz(tmp_path / "crashed" / "checkpoint.npz")
    for name in straight:
        if name != "config":
            assert np.array_equal(straight[name], resumed[name]), name
    assert (tmp_path / "straight" / "history.csv").read_text() == (tmp_path / "crashed" / "history.csv").read_text()


def test_extending_a_finished_run_without_a_schedule_is_bit_identical(tmp_path):
    """N steps, save, load, N more steps == 2N steps in one go (no learning-rate schedule)."""
    common = dict(data="ring8", batch_size=16, progress=False, eval_samples=50, log_every=1)
    plain = dataclasses.replace(presets.PRESETS["ring8"], lr_decay="none")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(presets.PRESETS, "ring8", plain)
        train(TrainConfig(steps=12, out=str(tmp_path / "straight"), **common))
        train(TrainConfig(steps=6, out=str(tmp_path / "first"), **common))
        train(TrainConfig(steps=12, progress=False), resume=str(tmp_path / "first"))
    straight = checkpoint.read_npz(tmp_path / "straight" / "checkpoint.npz")
    resumed = checkpoint.read_npz(tmp_path / "first" / "checkpoint.npz")
    assert all(np.array_equal(straight[name], resumed[name]) for name in straight if name != "config")
