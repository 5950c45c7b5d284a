"""benchmarks/dcgan_torch_quality.py, the dcgan-paper recipe in PyTorch scored by minigan's metric:
a tiny run on sklearn's digits end to end, its refusals, its line without PyTorch, and the
`TorchDCGAN` it trains (the preset's networks, its learning rate, the real batch given)."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minigan.backend import get_backend
from minigan.bench.dcgan_torch import TorchDCGAN
from minigan.run.presets import PRESETS, build_gan

from conftest import load_benchmark_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "dcgan_torch_quality.py"
DIGITS = (8, 8, 1)  # (H, W, C) of sklearn's digits
MINIGAN_NAMES = {"Linear": "Dense", "Unflatten": "Reshape", "BatchNorm2d": "BatchNorm"}  # torch's -> minigan's


@pytest.fixture
def torch():
    """PyTorch, its thread count restored after the test (the script sets it)."""
    torch = pytest.importorskip("torch", reason="the PyTorch twin of the dcgan-paper recipe (pip install torch==2.13.0)")
    threads = torch.get_num_threads()
    yield torch
    torch.set_num_threads(threads)


def test_a_tiny_run_on_digits_prints_and_writes_every_evaluation(torch, tmp_path, capsys):
    pytest.importorskip("sklearn")
    load_benchmark_script("dcgan_torch_quality").main(
        ["--data", "digits", "--steps", "4", "--eval-every", "2", "--samples", "100",
         "--json", str(tmp_path / "t.json")])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("### dcgan-paper recipe in PyTorch on digits: lr D and G 0.001, ")
    results = json.loads((tmp_path / "t.json").read_text())
    rows = results["rows"]
    assert [row["step"] for row in rows] == [2, 4] and results["args"]["lr"] == PRESETS["dcgan-paper"].lr
    for row in rows:
        assert all(math.isfinite(row[key]) and row[key] > 0 for key in ("eval_mode", "train_mode", "train_s"))
        label, distance = row["worst_class"].split(": ")
        assert 0 <= int(label) < 10 and float(distance) >= 0
    table = [line for line in out if line.startswith(("| 2 |", "| 4 |"))]
    assert table == [f"| {row['step']} | {row['train_s']} | {row['eval_mode']:.2f} | {row['worst_class']} | "
                     f"{row['train_mode']:.2f} |" for row in rows]
    assert out[-1] == f"evaluation mode: {rows[0]['eval_mode']:.2f} / {rows[1]['eval_mode']:.2f}"


@pytest.mark.parametrize("arguments, option", [(["--steps", "0"], "--steps"),
                                               (["--steps", "4", "--eval-every", "5"], "--eval-every"),
                                               (["--eval-every", "0"], "--eval-every"),
                                               (["--lr", "0"], "--lr"), (["--lr", "-1e-3"], "--lr"),
                                               (["--threads", "0"], "--threads"), (["--samples", "1"], "--samples"),
                                               (["--r1-gamma", "-1"], "--r1-gamma"), (["--r1-gamma", "nan"], "--r1-gamma"),
                                               (["--discriminator-mlp-head", "0"], "--discriminator-mlp-head")])
def test_nonsense_arguments_exit_with_one_line_naming_the_option(arguments, option, capsys):
    with pytest.raises(SystemExit) as error:
        load_benchmark_script("dcgan_torch_quality").parse_args(arguments)  # not main: a miss must not train
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert error.value.code == 2 and len(errors) == 1 and option in errors[0]


def test_without_torch_it_says_what_to_install_in_one_line():
    blocked = f"import runpy, sys; sys.modules['torch'] = None; sys.argv = ['{SCRIPT.name}']; " \
              f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"
    result = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == ["this benchmark needs PyTorch: pip install torch==2.13.0"]


@pytest.mark.parametrize("image", [DIGITS, (28, 28, 1)])
def test_the_torch_networks_are_the_presets(torch, image):
    model = TorchDCGAN(torch, 2, image=image)
    gan = build_gan(PRESETS["dcgan-paper"], image, get_backend("numpy", "float32", seed=0))
    for ours, theirs in ((gan.generator, model.G), (gan.discriminator, model.D)):
        assert [MINIGAN_NAMES.get(type(module).__name__, type(module).__name__) for module in theirs] == \
            [type(layer).__name__ for layer in ours.layers]
        assert sum(parameter.numel() for parameter in theirs.parameters()) == ours.params.size
    assert tuple(model.G(torch.randn(2, 100)).shape) == (2, image[2], *image[:2])  # (N, C, H, W)


def test_the_mlp_head_is_the_presets_and_d_joins_both_heads_logits(torch):
    model = TorchDCGAN(torch, 4, image=DIGITS, mlp_head=(7, 5))
    preset = PRESETS["dcgan-paper"].with_overrides(discriminator_mlp_head=(7, 5))
    ours = build_gan(preset, DIGITS, get_backend("numpy", "float32", seed=0)).discriminator
    convolutional, perceptron = model.D.heads
    assert [[MINIGAN_NAMES.get(type(module).__name__, type(module).__name__) for module in head]
            for head in (convolutional, perceptron)] == \
        [[type(layer).__name__ for layer in branch] for branch in ours.layers[0].branches]
    assert sum(parameter.numel() for parameter in model.D.parameters()) == ours.params.size
    assert float(perceptron[1].weight.detach().std()) == pytest.approx(0.02, rel=0.2)  # N(0, 0.02), as the preset
    logits = model.D(model.real)
    assert tuple(logits.shape) == (4, 2)
    np.testing.assert_allclose(logits[:, 1].detach().numpy(), perceptron(model.real)[:, 0].detach().numpy())
    d_loss, _ = model.train_step()
    assert np.isfinite(d_loss)


def test_the_learning_rate_and_the_seed_are_the_ones_given(torch):
    model = TorchDCGAN(torch, 2, lr=3e-3, seed=1, image=DIGITS)
    assert [group["lr"] for optimizer in (model.g_opt, model.d_opt) for group in optimizer.param_groups] == [3e-3] * 2
    default = TorchDCGAN(torch, 2, image=DIGITS)  # the step benchmark's
    assert [group["lr"] for group in default.d_opt.param_groups] == [2e-4]
    again, other = TorchDCGAN(torch, 2, seed=1, image=DIGITS), TorchDCGAN(torch, 2, seed=2, image=DIGITS)
    assert torch.equal(model.G[0].weight, again.G[0].weight) and not torch.equal(model.G[0].weight, other.G[0].weight)


def test_train_step_trains_on_the_batch_given(torch):
    def stepped(real):
        model = TorchDCGAN(torch, 4, seed=3, image=DIGITS)  # reseeds: every model draws the same noise
        model.train_step(None if real is None else real(model))
        return model

    default, same, other = (stepped(None), stepped(lambda model: model.real.clone()),
                            stepped(lambda model: -model.real))
    weights = [model.D[0].weight for model in (default, same, other)]
    assert torch.equal(weights[0], weights[1]) and not torch.allclose(weights[0], weights[2])


def test_samples_are_channels_last_in_either_mode_and_leave_g_training(torch):
    script = load_benchmark_script("dcgan_torch_quality")
    model = TorchDCGAN(torch, 4, image=DIGITS)
    noise = np.random.default_rng(0).standard_normal((5, 100))  # float64, as evaluation_noise gives it
    evaluation = script.torch_samples(model, noise, False)
    assert model.G.training and evaluation.shape == (5, *DIGITS) and evaluation.dtype == np.float32
    model.G.eval()
    with torch.no_grad():
        expected = model.G(torch.from_numpy(noise).float()).permute(0, 2, 3, 1).numpy()
    model.G.train()
    np.testing.assert_array_equal(evaluation, expected)
    training = script.torch_samples(model, noise, True)
    assert model.G.training and training.shape == (5, *DIGITS) and not np.allclose(training, evaluation)


def test_the_spectrally_normalised_discriminator_has_no_batchnorm_and_unit_spectral_norms(torch):
    model = TorchDCGAN(torch, 4, image=DIGITS, spectral_norm=True)
    nn = torch.nn
    kinds = (nn.Conv2d, nn.LeakyReLU, nn.Conv2d, nn.LeakyReLU, nn.Flatten, nn.Linear)  # no BatchNorm2d
    assert len(model.D) == len(kinds) and all(isinstance(m, kind) for m, kind in zip(model.D, kinds))
    assert any(isinstance(module, nn.BatchNorm2d) for module in TorchDCGAN(torch, 4, image=DIGITS).D)
    normalised = [module for module in model.D if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear))]
    assert all(torch.nn.utils.parametrize.is_parametrized(module, "weight") for module in normalised)
    for _ in range(5):
        model.train_step()
    with torch.no_grad():
        for _ in range(300):  # each forward pass in training runs one power iteration
            model.D(model.real)
        norms = [torch.linalg.matrix_norm(module.weight.reshape(module.weight.shape[0], -1), ord=2).item()
                 for module in normalised]
        raw = [torch.linalg.matrix_norm(module.parametrizations.weight.original.reshape(
            module.weight.shape[0], -1), ord=2).item() for module in normalised]
    assert all(abs(norm - 1) < 1e-3 for norm in norms), norms  # W / sigma(W): largest singular value 1
    assert all(abs(norm - 1) > 0.1 for norm in raw), raw       # the weights themselves are not


def test_the_r1_discriminator_has_no_batchnorm_and_its_penalty_is_the_squared_input_gradient(torch):
    model = TorchDCGAN(torch, 3, image=DIGITS, r1_gamma=4.0)
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in model.D)
    model.D.double()
    real = torch.rand(3, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    penalty = model.r1_penalty(real, model.D(real)).item()
    # the input gradient by central differences, one pixel at a time (D maps each example alone)
    flat, h, squares = real.detach().reshape(3, -1), 1e-6, np.zeros(3)
    with torch.no_grad():
        for pixel in range(flat.shape[1]):
            up, down = flat.clone(), flat.clone()
            up[:, pixel] += h
            down[:, pixel] -= h
            slope = (model.D(up.reshape(real.shape)) - model.D(down.reshape(real.shape)))[:, 0] / (2 * h)
            squares += slope.numpy() ** 2
    assert penalty == pytest.approx(4.0 / 2 * squares.mean(), rel=1e-6)


def test_the_r1_penalty_changes_d_step_by_its_weight(torch):
    def first_weights(r1_gamma):
        model = TorchDCGAN(torch, 4, seed=3, image=DIGITS, r1_gamma=r1_gamma)  # same weights, same noise
        model.train_step()
        return model.D[0].weight

    negligible, again, penalised = first_weights(1e-30), first_weights(1e-30), first_weights(50.0)
    assert torch.equal(negligible, again) and not torch.allclose(penalised, negligible)

