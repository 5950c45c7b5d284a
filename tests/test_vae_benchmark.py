"""The VAE-against-PyTorch benchmark on a fake 28x28 IDX set (256 training, 20 test images):
both sides start from the same parameters and agree on the first step's loss and on the
ELBO, and the script prints its table and writes its JSON. Structure only: no assertion
on speeds."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minigan.run.realdata import RealData
from test_data import write_fake_idx_dir

from conftest import load_benchmark_script

torch = pytest.importorskip("torch", reason="the benchmark's reference side is PyTorch (pip install torch)")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "vae_vs_torch.py"


def load_script():
    return load_benchmark_script("vae_vs_torch")


@pytest.fixture
def idx_dir(tmp_path):
    write_fake_idx_dir(tmp_path, n_train=256, n_test=20)
    return tmp_path


def test_both_sides_start_equal_and_take_the_same_first_step(idx_dir):
    script = load_script()
    sides = script.build_sides(seed=3, torch=torch)
    vae, twin = sides["minigan"], sides["torch"]
    for ours, theirs in ((vae.encoder, twin.encoder), (vae.decoder, twin.decoder)):
        for (name, value, _), param in zip(ours.named_parameters(), theirs.parameters(), strict=True):
            np.testing.assert_array_equal(value, param.detach().numpy().T, err_msg=name)
            assert param.dtype == torch.float32 and value.dtype == np.float32
    data = RealData("idx", script.PRESET.batch_size, 3, str(idx_dir))
    x_test = data.dataset.x_test
    eps_test = script.elbo_noise(3, len(x_test))
    np.testing.assert_allclose(vae.elbo(x_test, eps_test), twin.elbo(x_test, eps_test), rtol=1e-5)
    x, eps = data.batch(0), script.noise(3, 0, data.batch_size)
    assert x.dtype == eps.dtype == np.float32 and eps.shape == (128, 20)
    ours, theirs = vae.train_step(x, eps)["loss"], twin.train_step(x, eps)["loss"]
    assert ours == pytest.approx(theirs, rel=1e-5) and ours > 0


def test_script_prints_the_table_and_writes_json(idx_dir, tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--epochs", "1.5", "--data-dir", str(idx_dir),
                             "--rounds", "2", "--block-steps", "2", "--json", str(tmp_path / "vae.json")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "## VAE preset, float32 CPU: 3 steps of batch 128, 20 test images"
    rows = [line for line in lines if line.startswith("|")]
    assert rows[0] == "| | minigan | torch | minigan vs torch |"
    assert [row.split(" | ")[0] for row in rows[2:]] == [
        "| test ELBO (nats/example)", "| training loss, last epoch mean", "| training wall time (s)",
        "| training samples/s", "| timed samples/s, median of 2 x 2 steps (spread; first / second)"]
    assert all(row.count("|") == 5 for row in rows)
    assert any(line.startswith("- ELBO within 1%: yes;") for line in lines)
    assert "- threads per side: 1" in lines and any(line.startswith("- NumPy ") for line in lines)
    assert any(line.startswith("- torch ") and ", 1 thread(s): " in line for line in lines)
    results = json.loads((tmp_path / "vae.json").read_text())
    assert results["steps"] == 3 and results["arguments"]["epochs"] == 1.5
    for side in ("minigan", "torch"):
        timed = results[side]["timed"]  # two rounds: the side went first in one, second in the other
        assert timed["low"] <= timed["when_first"] <= timed["high"] and timed["when_second"] is not None
        assert timed["median"] == results[side]["timed_samples_per_s"] and results[side]["train_seconds"] > 0
    assert results["elbo_relative_difference"] < 1e-4
    assert results["minigan"]["last_epoch_loss"] == pytest.approx(results["torch"]["last_epoch_loss"], rel=1e-4)


def test_refuses_bad_options():
    result = subprocess.run([sys.executable, str(SCRIPT), "--epochs", "0"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "--epochs must be > 0" in result.stderr
