"""The command line end to end on tiny budgets, and its one-line errors."""
import json
import subprocess
import sys
import types

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from minigan.run import cli
from minigan.run.cli import main

TINY = ["--steps", "20", "--batch-size", "16", "--no-progress"]


def run_main(capsys, *argv):
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_every_output(trained):
    for name in ("checkpoint.npz", "metrics.json", "history.csv", "samples.png", "losses.png"):
        assert (trained / name).stat().st_size > 0, name
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["data"] == "ring8" and metrics["steps"] == 20
    assert 0 <= metrics["modes_covered"] <= 8 and 0 <= metrics["high_quality"] <= 1
    header, *rows = (trained / "history.csv").read_text().splitlines()
    assert header == "step,d_loss,g_loss,d_real,d_fake" and len(rows) == 2


def test_sample_to_npy_and_png(trained, tmp_path, capsys):
    status, out, _ = run_main(capsys, "sample", "--checkpoint", str(trained / "checkpoint.npz"),
                              "--n", "30", "--out", str(tmp_path / "s.npy"))
    assert status == 0 and "wrote 30 samples" in out
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (30, 2) and np.all(np.isfinite(samples))
    status, _, _ = run_main(capsys, "sample", "--checkpoint", str(trained / "checkpoint.npz"),
                            "--out", str(tmp_path / "s.png"))
    assert status == 0 and (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_prints_the_metrics(trained, capsys):
    status, out, _ = run_main(capsys, "eval", "--checkpoint", str(trained / "checkpoint.npz"), "--n", "500")
    metrics = json.loads(out)
    assert status == 0 and metrics["num_samples"] == 500 and "reverse_kl" in metrics


def test_eval_repeats_the_runs_image_metrics_exactly(tmp_path, capsys):
    """The classifier trains under the run's BLAS threads in both, so the numbers agree to the
    last bit (under another thread count its products round differently)."""
    pytest.importorskip("sklearn")
    assert main(["train", "--data", "digits", "--out", str(tmp_path), *TINY]) == 0
    recorded = json.loads((tmp_path / "metrics.json").read_text())
    capsys.readouterr()
    with threadpool_limits(limits=2, user_api="blas"):  # what eval would otherwise use here
        status, out, _ = run_main(capsys, "eval", "--checkpoint", str(tmp_path / "checkpoint.npz"))
    evaluated = json.loads(out)
    assert status == 0 and evaluated["num_samples"] == recorded["num_samples"] == 2500
    for key in ("frechet_distance", "frechet_floor", "classifier_accuracy", "class_histogram"):
        assert evaluated[key] == recorded[key], key


def test_resume_continues_to_more_steps(trained, tmp_path, capsys):
    status, out, _ = run_main(capsys, "train", "--resume", str(trained), "--steps", "30",
                              "--out", str(tmp_path), "--no-progress")
    assert status == 0 and json.loads(out.splitlines()[0])["steps"] == 30


@pytest.mark.parametrize("argv, words", [
    (["train", "--data", "cifar"], "invalid choice"),
    (["train", "--steps", "0"], "must be a positive integer"),
    (["train", "--lr", "-1", *TINY], "lr must be a positive number"),
    (["train", "--lr-d", "inf", *TINY], "lr_d must be a positive number"),
    (["train", "--backend", "cupy", *TINY], "cupy"),
    (["train", "--data", "idx", "--data-dir", "/nonexistent/dir", *TINY], "/nonexistent/dir"),
    (["train", "--resume", "/nonexistent/run", *TINY], "checkpoint not found"),
    (["sample", "--checkpoint", "/nonexistent.npz", "--out", "x.png"], "checkpoint not found"),
    (["eval"], "--checkpoint"),
    ([], "required"),
])
def test_errors_are_one_line(capsys, argv, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "cupy", None)
    status, _, err = run_main(capsys, *argv)
    assert status == 2
    assert err.startswith("minigan: error:") and err.count("\n") == 1 and words in err, err
    assert "Traceback" not in err


def test_cupy_without_a_device_is_one_line(capsys, monkeypatch, tmp_path):
    no_device = types.SimpleNamespace(getDeviceCount=lambda: 0)
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=no_device)))
    status, _, err = run_main(capsys, "train", "--backend", "cupy", "--out", str(tmp_path), *TINY)
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "no CUDA device" in err and "use backend 'numpy'" in err


# named as CuPy's cupy.cuda.memory.OutOfMemoryError (tests/test_backend.py checks the name against CuPy's)
OutOfMemoryError = type("OutOfMemoryError", (MemoryError,), {"__module__": "cupy.cuda.memory"})


def _run_out_of_memory(*arguments, **keywords):
    raise OutOfMemoryError("Out of memory allocating 2,147,483,648 bytes (allocated so far: 1,024 bytes).")


@pytest.mark.parametrize("argv, words", [
    (["train", "--backend", "auto", *TINY], "out of GPU memory while training (Out of memory allocating "
     "2,147,483,648 bytes (allocated so far: 1,024 bytes).): try a smaller --batch-size, or --backend numpy"),
    (["bench", "--backends", "numpy", "--no-progress"], "out of GPU memory while benchmarking"),
])
def test_out_of_gpu_memory_is_one_line(capsys, monkeypatch, tmp_path, argv, words):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "train", _run_out_of_memory)
    monkeypatch.setattr(cli, "run_bench", _run_out_of_memory)
    status, _, err = run_main(capsys, *argv)
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("minigan: error: " + words), err


def test_an_unexpected_error_is_not_mistaken_for_out_of_memory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "train", lambda *arguments, **keywords: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["train", *TINY])


def test_corrupt_checkpoint_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"\x00" * 100)
    status, _, err = run_main(capsys, "eval", "--checkpoint", str(bad))
    assert status == 2 and "not a readable checkpoint" in err and err.count("\n") == 1


def test_sample_refuses_unknown_suffix(trained, capsys):
    status, _, err = run_main(capsys, "sample", "--checkpoint", str(trained / "checkpoint.npz"),
                              "--out", "samples.jpg")
    assert status == 2 and "must end in .png or .npy" in err


def test_python_dash_m_entry_point(tmp_path):
    result = subprocess.run([sys.executable, "-m", "minigan", "train", "--steps", "5", "--out",
                             str(tmp_path), "--no-progress"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "checkpoint.npz").exists()
    bad = subprocess.run([sys.executable, "-m", "minigan", "train", "--data", "nope"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_a_vae_trains_samples_and_evaluates_from_the_command_line(tmp_path, capsys):
    pytest.importorskip("sklearn")
    status, out, _ = run_main(capsys, "train", "--model", "vae", "--data", "digits", "--steps", "4",
                              "--batch-size", "16", "--out", str(tmp_path), "--no-progress")
    assert status == 0 and "reconstructions.png" in out
    checkpoint = str(tmp_path / "checkpoint.npz")
    status, _, _ = run_main(capsys, "sample", "--checkpoint", checkpoint, "--n", "9", "--out", str(tmp_path / "s.npy"))
    samples = np.load(tmp_path / "s.npy")
    assert status == 0 and samples.shape == (9, 64) and samples.min() >= 0 and samples.max() <= 1
    status, out, _ = run_main(capsys, "eval", "--checkpoint", checkpoint, "--n", "100")
    metrics = json.loads(out)
    assert status == 0 and metrics["elbo"] < 0 and metrics["log_likelihood"] < 0 and metrics["num_samples"] == 100


def test_a_tanh_image_model_samples_to_a_picture(tmp_path, capsys, monkeypatch):
    """A DCGAN's [-1, 1] samples are mapped back to [0, 1] pixels for the PNG."""
    pytest.importorskip("sklearn")
    from minigan import plots
    status, _, _ = run_main(capsys, "train", "--data", "digits", "--preset", "dcgan", "--steps", "2",
                            "--batch-size", "8", "--out", str(tmp_path), "--no-progress")
    checkpoint = str(tmp_path / "checkpoint.npz")
    status, _, _ = run_main(capsys, "sample", "--checkpoint", checkpoint, "--n", "4", "--out", str(tmp_path / "s.npy"))
    raw = np.load(tmp_path / "s.npy")
    drawn = []
    monkeypatch.setattr(plots, "save_image_grid", lambda out, images, shape, **_: drawn.append((images, shape)))
    status, _, _ = run_main(capsys, "sample", "--checkpoint", checkpoint, "--n", "4", "--out", str(tmp_path / "s.png"))
    images, shape = drawn[-1]
    assert status == 0 and raw.shape == (4, 8, 8, 1) and shape == (8, 8)
    np.testing.assert_allclose(images, np.clip((raw.reshape(4, -1) + 1) / 2, 0, 1), rtol=1e-6)
