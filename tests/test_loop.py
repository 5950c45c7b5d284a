"""The training loop: preset resolution (loss and packing overrides), the learning-rate
schedule, real batches that depend only on (seed, index), bit-exact resumption, Ctrl-C,
the NaN guard, float64 runs, BLAS threads, and runs without matplotlib."""
import dataclasses
import hashlib
import json
import os
import signal
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import minigan as mg
from minigan import checkpoint
from minigan.checkpoint import load_checkpoint
from minigan.gan import GAN
from minigan.run import loop as train_module
from minigan.run import presets
from minigan.run.config import RunConfig
from minigan.run.loop import TrainingDiverged, TrainingInterrupted, train
from minigan.run.realdata import RealData

from conftest import assert_same_checkpoint_arrays

TINY = dict(batch_size=16, progress=False, eval_samples=50, log_every=1)


def build(config):
    preset = config.resolved_preset()
    return preset, presets.build_gan(preset, (2,), mg.get_backend("numpy"))


def test_the_presets_own_loss_keeps_its_optimizer():
    preset, gan = build(RunConfig(data="ring8"))
    assert preset.optimizer == "adam" and type(gan.d_opt) is mg.Adam and gan.d_opt.lr == preset.lr


def test_another_loss_brings_its_paper_optimizer_and_critic_steps():
    preset, gan = build(RunConfig(data="ring8", loss="wgan"))
    assert gan.loss == "wgan" and type(gan.d_opt) is mg.RMSProp and gan.d_opt.lr == 5e-5
    assert gan.d_steps == 5 and gan.objective.clip_value == 0.01
    _, gan = build(RunConfig(data="ring8", loss="wgan-gp", lr=3e-4))
    assert type(gan.g_opt) is mg.Adam and gan.g_opt.lr == 3e-4 and gan.g_opt.beta2 == 0.9


def test_the_discriminator_s_own_learning_rate():
    """--lr-d sets D's rate alone; --lr sets every network's, a preset's lr_d included,
    unless --lr-d is named too; another loss's paper optimizer still takes --lr-d."""
    two_rates = dataclasses.replace(presets.PRESETS["ring8"], lr=2e-3, lr_d=1e-3)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(presets.PRESETS, "ring8", two_rates)
        for options, g_lr, d_lr in [({}, 2e-3, 1e-3), (dict(lr_d=5e-4), 2e-3, 5e-4), (dict(lr=3e-4), 3e-4, 3e-4),
                                    (dict(lr=3e-4, lr_d=1e-4), 3e-4, 1e-4)]:
            _, gan = build(RunConfig(data="ring8", **options))
            assert (gan.g_opt.lr, gan.d_opt.lr) == (g_lr, d_lr), options
            resolved = RunConfig(data="ring8", **options).resolved()
            assert (resolved.lr, resolved.lr_d) == (g_lr, None if d_lr == g_lr else d_lr), options
        _, gan = build(RunConfig(data="ring8", loss="wgan", lr_d=1e-4))
        assert type(gan.d_opt) is mg.RMSProp and (gan.g_opt.lr, gan.d_opt.lr) == (5e-5, 1e-4)
    preset = RunConfig(data="digits", model="vaegan", preset="vaegan", lr_d=1e-4).resolved_preset()
    vaegan = presets.build_vaegan(preset, (8, 8, 1), mg.get_backend("numpy"))
    rates = {name: optimizer.lr for name, optimizer in vaegan.optimizers.items()}
    assert rates == {"encoder_opt": 2e-4, "decoder_opt": 2e-4, "discriminator_opt": 1e-4}, rates


def test_pack_override_widens_the_discriminator():
    _, gan = build(RunConfig(data="ring8", pack=4))
    assert gan.pack == 4 and gan.discriminator.in_features == 8


@pytest.mark.parametrize("kwargs, words", [
    ({"loss": "wasserstein"}, "loss must be one of"),
    ({"pack": 0}, "pack must be a positive integer"),
    ({"data": "cifar"}, "data must be one of"),
    ({"preset": "nope"}, "preset must be one of"),
    ({"dtype": "float16"}, "dtype must be one of"),
    ({"blas_threads": 0}, "blas_threads must be a positive integer"),
    ({"steps": -3}, "steps must be a positive integer"),
    ({"lr_d": 0.0}, "lr_d must be a positive number"),
    ({"lr_d": float("nan")}, "lr_d must be a positive number"),
])
def test_bad_configurations(kwargs, words):
    with pytest.raises(ValueError, match=words):
        RunConfig(**kwargs).validate()


def test_linear_decay_reaches_zero_at_the_end(tmp_path, monkeypatch):
    decaying = dataclasses.replace(presets.PRESETS["ring8"], lr_decay="linear", lr=1e-3)
    monkeypatch.setitem(presets.PRESETS, "ring8", decaying)
    train(RunConfig(steps=10, batch_size=8, out=str(tmp_path), progress=False, eval_samples=20))
    gan, extra = load_checkpoint(tmp_path / "checkpoint.npz")
    assert extra["base_lr"] == {"g_opt": 1e-3, "d_opt": 1e-3}
    assert gan.d_opt.lr == pytest.approx(1e-3 * (1 - 9 / 10))  # the last of 10 steps
    train(RunConfig(steps=20, progress=False), resume=str(tmp_path))
    gan, _ = load_checkpoint(tmp_path / "checkpoint.npz")
    assert gan.g_opt.lr == pytest.approx(1e-3 * (1 - 19 / 20))


def test_real_batches_depend_only_on_seed_and_index():
    a, b = RealData("ring8", 16, seed=3), RealData("ring8", 16, seed=3)
    assert np.array_equal(a.batch(5), b.batch(5)) and a.batch(5).dtype == np.float32
    assert not np.array_equal(a.batch(5), a.batch(6))
    assert not np.array_equal(a.batch(5), RealData("ring8", 16, seed=4).batch(5))


def test_wgan_with_packing_trains_from_the_command_line(tmp_path):
    from minigan.run.cli import main
    assert main(["train", "--loss", "wgan-gp", "--pack", "2", "--steps", "3", "--batch-size", "8",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    gan, _ = load_checkpoint(tmp_path / "checkpoint.npz")
    assert gan.loss == "wgan-gp" and gan.pack == 2 and gan.steps == 3 and gan.d_steps == 5


def test_best_preset_is_looked_up_per_data_set():
    assert RunConfig(data="ring8", preset="best").resolved_preset() == presets.PRESETS["ring8-best"]
    assert RunConfig(data="grid25", preset="best").resolved_preset() == presets.PRESETS["grid25-best"]
    with pytest.raises(ValueError, match="no best preset for digits"):
        RunConfig(data="digits", preset="best").validate()


@pytest.mark.parametrize("data", ["ring8", "digits"])
def test_resuming_after_a_crash_is_bit_identical(tmp_path, monkeypatch, data):
    """A run stopped right after its checkpoint at step 7 and resumed ends exactly where an
    uninterrupted 14-step run ends (ring8's preset decays the learning rate, so this also
    checks that the schedule resumes correctly)."""
    if data == "digits":
        pytest.importorskip("sklearn")
    common = dict(data=data, steps=14, batch_size=16, progress=False, eval_samples=50, log_every=1,
                  checkpoint_every=7)
    train(RunConfig(out=str(tmp_path / "straight"), **common))

    write_history = train_module.write_history

    def write_then_crash(*args):
        write_history(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "write_history", write_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(RunConfig(out=str(tmp_path / "crashed"), **common))
    monkeypatch.undo()
    assert checkpoint.load_checkpoint(tmp_path / "crashed" / "checkpoint.npz")[0].steps == 7
    train(RunConfig(progress=False), resume=str(tmp_path / "crashed"))

    assert_same_checkpoint_arrays(tmp_path / "straight", tmp_path / "crashed")
    assert (tmp_path / "straight" / "history.csv").read_text() == (tmp_path / "crashed" / "history.csv").read_text()


def test_extending_a_finished_run_without_a_schedule_is_bit_identical(tmp_path):
    """N steps, save, load, N more steps == 2N steps in one go (no learning-rate schedule)."""
    common = dict(data="ring8", batch_size=16, progress=False, eval_samples=50, log_every=1)
    plain = dataclasses.replace(presets.PRESETS["ring8"], lr_decay="none")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(presets.PRESETS, "ring8", plain)
        train(RunConfig(steps=12, out=str(tmp_path / "straight"), **common))
        train(RunConfig(steps=6, out=str(tmp_path / "first"), **common))
        train(RunConfig(steps=12, progress=False), resume=str(tmp_path / "first"))
    assert_same_checkpoint_arrays(tmp_path / "straight", tmp_path / "first")


def interrupt_at(monkeypatch, step):
    """Sends SIGINT to this process while the GAN computes step `step` (1-based)."""
    original = GAN.train_step

    def train_step(self, *args, **kwargs):
        if self.steps == step - 1:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GAN, "train_step", train_step)


def test_ctrl_c_saves_the_current_step_and_resumes_bit_exactly(tmp_path, monkeypatch):
    common = dict(data="ring8", steps=12, checkpoint_every=100, **TINY)
    train(RunConfig(out=str(tmp_path / "straight"), **common))
    interrupt_at(monkeypatch, 5)
    with pytest.raises(TrainingInterrupted, match="interrupted at step 5"):
        train(RunConfig(out=str(tmp_path / "stopped"), **common))
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "stopped" / "checkpoint.npz")[0].steps == 5
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    train(RunConfig(progress=False), resume=str(tmp_path / "stopped"))
    assert_same_checkpoint_arrays(tmp_path / "straight", tmp_path / "stopped")
    assert (tmp_path / "straight" / "history.csv").read_text() == (tmp_path / "stopped" / "history.csv").read_text()


def test_ctrl_c_on_the_command_line_exits_130_with_one_line(tmp_path, monkeypatch, capsys):
    from minigan.run.cli import main
    interrupt_at(monkeypatch, 3)
    status = main(["train", "--steps", "10", "--batch-size", "8", "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 130 and err.count("\n") == 1 and f"--resume {tmp_path}" in err
    assert load_checkpoint(tmp_path / "checkpoint.npz")[0].steps == 3


def test_divergence_is_one_error_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    """From step 7 on, D's weights are infinite: NumPy would warn about overflow and invalid
    values; the loop reports the divergence instead, and the step-5 checkpoint stays."""
    original = GAN.train_step

    def poisoned(self, *args, **kwargs):
        if self.steps == 6:
            self.discriminator.params[:] = np.inf
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GAN, "train_step", poisoned)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any NumPy RuntimeWarning fails the test
        with pytest.raises(TrainingDiverged, match=r"step 7: d_loss is nan; the last good checkpoint "
                                                   r"\(step 5\)"):
            train(RunConfig(data="ring8", steps=20, checkpoint_every=5, out=str(tmp_path), **TINY))
    gan, _ = load_checkpoint(tmp_path / "checkpoint.npz")
    assert gan.steps == 5 and np.all(np.isfinite(gan.discriminator.params))


def test_float64_runs_from_the_command_line(tmp_path):
    from minigan.run.cli import main
    assert main(["train", "--dtype", "float64", "--steps", "3", "--batch-size", "8", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    gan, extra = load_checkpoint(tmp_path / "checkpoint.npz")
    assert gan.generator.params.dtype == np.float64 and extra["config"]["dtype"] == "float64"


def test_the_preset_s_blas_threads_apply_during_the_run(tmp_path, monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    seen = []
    original = GAN.train_step

    def recording(self, *args, **kwargs):
        seen.append({info["num_threads"] for info in threadpoolctl.threadpool_info()
                     if info["user_api"] == "blas"})
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GAN, "train_step", recording)
    train(RunConfig(data="ring8", steps=2, blas_threads=1, out=str(tmp_path), **TINY))
    assert seen and all(threads == {1} for threads in seen)


def test_a_run_without_matplotlib_succeeds_and_says_so_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    metrics = train(RunConfig(data="ring8", steps=3, out=str(tmp_path), **TINY))
    err = capsys.readouterr().err
    assert err.count("matplotlib is not installed") == 1 and "minigan[plots]" in err
    assert metrics["files"] == ["checkpoint.npz", "history.csv", "metrics.json"]
    assert not (tmp_path / "samples.png").exists() and (tmp_path / "checkpoint.npz").exists()


@pytest.mark.blas_kernels("Haswell")  # minigan 0.1 recorded its fixtures with these kernels
@pytest.mark.parametrize("name, options", [
    ("ring8", dict(data="ring8")),
    ("ring8_wgan_gp_pack2", dict(data="ring8", loss="wgan-gp", pack=2)),
    ("digits", dict(data="digits")),
])
def test_float64_runs_equal_minigan_0_1_bit_for_bit(tmp_path, name, options):
    """50 float64 steps from seed 0 end on exactly the parameters version 0.1 reached
    (tests/fixtures/v0_1/README.md says how those were made)."""
    if options["data"] == "digits":
        pytest.importorskip("sklearn")
    fixtures = Path(__file__).parent / "fixtures" / "v0_1"
    expected = json.loads((fixtures / "reference_float64_50_steps.sha256.json").read_text())
    train(RunConfig(steps=50, dtype="float64", out=str(tmp_path), progress=False, eval_samples=20, **options))
    gan, _ = load_checkpoint(tmp_path / "checkpoint.npz")
    for part in ("generator", "discriminator"):
        params = np.ascontiguousarray(gan.models[part].params, dtype="<f8")
        if name == "ring8":
            reference = np.load(fixtures / "reference_ring8_float64_50_steps.npz")[f"ring8/{part}"]
            np.testing.assert_array_equal(params, reference)
        assert hashlib.sha256(params.tobytes()).hexdigest() == expected[f"{name}/{part}"], part


def straight_and_resumed(tmp_path, steps, **common):
    """Trains `steps` steps in one run (tmp_path/straight) and in two halves, the second by
    --resume (tmp_path/resumed); returns the straight run's metrics and checkpoint arrays,
    asserted equal to the resumed run's."""
    metrics = train(RunConfig(steps=steps, out=str(tmp_path / "straight"), **common))
    train(RunConfig(steps=steps // 2, out=str(tmp_path / "resumed"), **common))
    train(RunConfig(steps=steps, progress=False), resume=str(tmp_path / "resumed"))
    return metrics, assert_same_checkpoint_arrays(tmp_path / "straight", tmp_path / "resumed")


def test_a_vae_run_trains_evaluates_and_resumes_bit_exactly(tmp_path):
    pytest.importorskip("sklearn")
    common = dict(model="vae", data="digits", batch_size=16, progress=False, eval_samples=50, log_every=1)
    metrics, straight = straight_and_resumed(tmp_path, 6, **common)
    assert metrics["elbo"] < 0 and metrics["log_likelihood"] < 0 and metrics["log_likelihood_k"] == 100
    assert metrics["files"][-2:] == ["reconstructions.png", "losses.png"]
    header = (tmp_path / "straight" / "history.csv").read_text().splitlines()[0]
    assert header == "step,loss,recon,kl"
    assert "encoder/0.W" in straight and "decoder_opt/m_scaled" in straight
    _, extra = load_checkpoint(tmp_path / "straight" / "checkpoint.npz")
    assert extra["config"]["model"] == "vae" and extra["config"]["loss"] is None


def test_the_convolutional_vae_preset_trains_on_images_and_resumes_bit_exactly(tmp_path):
    pytest.importorskip("sklearn")
    common = dict(model="vae", preset="vae-conv", data="digits", batch_size=8, progress=False, eval_samples=20)
    metrics, straight = straight_and_resumed(tmp_path, 4, **common)
    assert metrics["elbo"] < 0 and "reconstructions.png" in metrics["files"]
    assert straight["encoder/0.W"].shape == (4, 4, 1, 32)  # a Conv2d: (kh, kw, in, out)
    assert straight["decoder/7.W"].shape == (4, 4, 32, 1)  # the last ConvTranspose2d, to logits


@pytest.mark.parametrize("options, words", [
    (dict(model="vae", loss="wgan"), "--loss and --pack apply to GANs"),
    (dict(model="vae", pack=2), "--loss and --pack apply to GANs"),
    (dict(model="vae", lr_d=1e-4), "--lr-d applies to models with a discriminator"),
    (dict(model="vae", preset="ring8"), "preset 'ring8' builds a gan, not a vae"),
    (dict(model="gan", preset="vae"), "preset 'vae' builds a vae, not a gan"),
])
def test_family_and_preset_must_agree(options, words):
    with pytest.raises(ValueError, match=words):
        RunConfig(data="digits", **options).resolved()


def test_default_output_directories_per_family():
    assert RunConfig(data="idx").output_dir() == Path("runs/idx")
    assert RunConfig(data="idx", model="vae").output_dir() == Path("runs/idx-vae")


def test_a_vaegan_run_trains_and_resumes_bit_exactly(tmp_path):
    pytest.importorskip("sklearn")
    common = dict(model="vaegan", data="digits", batch_size=8, progress=False, eval_samples=20, log_every=1)
    metrics, straight = straight_and_resumed(tmp_path, 4, **common)
    assert "reconstructions.png" in metrics["files"] and metrics["frechet_distance"] >= 0
    header = (tmp_path / "straight" / "history.csv").read_text().splitlines()[0]
    assert header == "step,prior,llike,d_loss,dec_gan,d_real,d_recon,d_fake"
    assert "discriminator_opt/square_avg" in straight or "discriminator_opt/m_scaled" in straight


def test_real_data_maps_between_the_data_and_the_model_s_range_and_layout():
    """Pictures and metrics feed real images to models (reconstructions) and read samples
    back: [0, 1] flat pixels <-> [-1, 1] channels-last images for a tanh DCGAN-style model."""
    pytest.importorskip("sklearn")
    data = RealData("digits", 4, seed=0, image_layout=True, symmetric=True)
    pixels = data.dataset.x_test[:3]  # (3, 64) in [0, 1]
    model_side = data.to_model_space(pixels)
    assert model_side.shape == (3, 8, 8, 1) and model_side.dtype == np.float32
    np.testing.assert_array_equal(model_side.reshape(3, -1), pixels * np.float32(2) - np.float32(1))
    np.testing.assert_allclose(data.to_data_space(model_side), pixels, atol=1e-7)
    assert np.array_equal(data.batch(0), data.to_model_space(data.iterator.batch(0)))


def test_backend_auto_says_once_when_it_falls_back_to_numpy(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cupy", None)  # as on a machine without CuPy
    train(RunConfig(data="ring8", steps=2, backend="auto", out=str(tmp_path), **TINY))
    err = capsys.readouterr().err
    assert err.count("--backend auto found no CuPy with a CUDA device, so this run uses numpy") == 1
    assert load_checkpoint(tmp_path / "checkpoint.npz")[0].backend.name == "numpy"


def test_a_checkpoint_is_never_written_with_non_finite_parameters(tmp_path, monkeypatch):
    """Statistics can stay finite while a parameter is not (here G's, after its update at
    step 8): the checkpoint at step 8 refuses, and step 4's stays."""
    original = GAN.train_step

    def poisoned(self, *args, **kwargs):
        stats = original(self, *args, **kwargs)
        if self.steps == 8:
            self.generator.params[0] = np.inf
        return stats

    monkeypatch.setattr(GAN, "train_step", poisoned)
    with pytest.raises(TrainingDiverged, match=r"by step 8: a parameter is not finite; the last good "
                                               r"checkpoint \(step 4\)"):
        train(RunConfig(data="ring8", steps=20, checkpoint_every=4, out=str(tmp_path), **TINY))
    assert load_checkpoint(tmp_path / "checkpoint.npz")[0].steps == 4
