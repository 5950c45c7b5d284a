"""Training runs: preset resolution (loss and packing overrides), the learning-rate
schedule, and real batches that depend only on (seed, index)."""
import dataclasses

import numpy as np
import pytest

import minigan as mg
from minigan import presets
from minigan.checkpoint import load_checkpoint
from minigan.train import RealData, TrainConfig, train


def build(config):
    preset = config.resolved_preset()
    return preset, presets.build_gan(preset, 2, mg.get_backend("numpy"))


def test_the_presets_own_loss_keeps_its_optimizer():
    preset, gan = build(TrainConfig(data="ring8"))
    assert preset.optimizer == "adam" and type(gan.d_opt) is mg.Adam and gan.d_opt.lr == preset.lr


def test_another_loss_brings_its_paper_optimizer_and_critic_steps():
    preset, gan = build(TrainConfig(data="ring8", loss="wgan"))
    assert gan.loss == "wgan" and type(gan.d_opt) is mg.RMSProp and gan.d_opt.lr == 5e-5
    assert gan.d_steps == 5 and gan.objective.clip_value == 0.01
    _, gan = build(TrainConfig(data="ring8", loss="wgan-gp", lr=3e-4))
    assert type(gan.g_opt) is mg.Adam and gan.g_opt.lr == 3e-4 and gan.g_opt.beta2 == 0.9


def test_pack_override_widens_the_discriminator():
    _, gan = build(TrainConfig(data="ring8", pack=4))
    assert gan.pack == 4 and gan.discriminator.in_features == 8


@pytest.mark.parametrize("kwargs, words", [
    ({"loss": "wasserstein"}, "loss must be one of"),
    ({"pack": 0}, "pack must be a positive integer"),
    ({"data": "cifar"}, "data must be one of"),
    ({"preset": "nope"}, "preset must be .best. or one of"),
    ({"steps": -3}, "steps must be a positive integer"),
])
def test_bad_configurations(kwargs, words):
    with pytest.raises(ValueError, match=words):
        TrainConfig(**kwargs).validate()


def test_linear_decay_reaches_zero_at_the_end(tmp_path, monkeypatch):
    decaying = dataclasses.replace(presets.PRESETS["ring8"], lr_decay="linear", lr=1e-3)
    monkeypatch.setitem(presets.PRESETS, "ring8", decaying)
    train(TrainConfig(steps=10, batch_size=8, out=str(tmp_path), progress=False, eval_samples=20))
    gan, extra = load_checkpoint(tmp_path / "checkpoint.npz")
    assert extra["base_lr"] == [1e-3, 1e-3]
    assert gan.d_opt.lr == pytest.approx(1e-3 * (1 - 9 / 10))  # the last of 10 steps
    train(TrainConfig(steps=20, progress=False), resume=str(tmp_path))
    gan, _ = load_checkpoint(tmp_path / "checkpoint.npz")
    assert gan.g_opt.lr == pytest.approx(1e-3 * (1 - 19 / 20))


def test_real_batches_depend_only_on_seed_and_index():
    a, b = RealData("ring8", 16, seed=3), RealData("ring8", 16, seed=3)
    assert np.array_equal(a.batch(5), b.batch(5)) and a.batch(5).dtype == np.float32
    assert not np.array_equal(a.batch(5), a.batch(6))
    assert not np.array_equal(a.batch(5), RealData("ring8", 16, seed=4).batch(5))


def test_wgan_with_packing_trains_from_the_command_line(tmp_path):
    from minigan.cli import main
    assert main(["train", "--loss", "wgan-gp", "--pack", "2", "--steps", "3", "--batch-size", "8",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    gan, _ = load_checkpoint(tmp_path / "checkpoint.npz")
    assert gan.loss == "wgan-gp" and gan.pack == 2 and gan.steps == 3 and gan.d_steps == 5


def test_best_preset_is_looked_up_per_data_set():
    assert TrainConfig(data="ring8", preset="best").resolved_preset() == presets.PRESETS["ring8-best"]
    assert TrainConfig(data="grid25", preset="best").resolved_preset() == presets.PRESETS["grid25-best"]
    with pytest.raises(ValueError, match="no best preset for digits"):
        TrainConfig(data="digits", preset="best").validate()
