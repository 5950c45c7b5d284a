"""The quality benchmark script end to end on a tiny budget (no quality assertions)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import load_benchmark_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"


def test_quality_script_prints_its_table_beside_the_published_rows(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--data", "ring8", "--steps", "5", "--seeds", "2",
                             "--losses", "hinge", "--pack", "1", "2", "--json", str(tmp_path / "q.json")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("| minigan ring8 preset, loss hinge, pack 1 |") for line in lines)
    assert any(line.startswith("| minigan ring8 preset, loss hinge, pack 2 |") for line in lines)
    assert "| PacGAN Table 1: GAN (published) | 6.3 | 98.2 | | |" in lines
    runs = json.loads((tmp_path / "q.json").read_text())
    assert len(runs) == 4 and {run["seed"] for run in runs} == {0, 1}
    assert all(0 <= run["modes_covered"] <= 8 for run in runs)


def test_first_seed_extends_an_earlier_run(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--data", "ring8", "--steps", "5", "--seeds", "2",
                             "--first-seed", "3", "--json", str(tmp_path / "q.json")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "### ring8: seed(s) 3-4, 2,500 samples each" in result.stdout
    assert {run["seed"] for run in json.loads((tmp_path / "q.json").read_text())} == {3, 4}


def test_image_presets_side_by_side(tmp_path):
    pytest.importorskip("sklearn")
    result = subprocess.run([sys.executable, str(SCRIPT), "--data", "digits", "--preset", "digits,dcgan",
                             "--steps", "3", "--seeds", "2", "--json", str(tmp_path / "q.json")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| configuration | Fréchet distance")
    assert rows[1].startswith("| digits preset |") and rows[2].startswith("| dcgan preset |")
    runs = json.loads((tmp_path / "q.json").read_text())
    assert [(run["configuration"], run["seed"]) for run in runs] == [
        ("digits preset", 0), ("digits preset", 1), ("dcgan preset", 0), ("dcgan preset", 1)]
    assert all(run["frechet_distance"] >= 0 for run in runs)


RECIPES = Path(__file__).resolve().parents[1] / "benchmarks" / "dcgan_recipes.py"


def test_dcgan_recipe_script_scores_every_evaluation(tmp_path):
    pytest.importorskip("sklearn")
    result = subprocess.run([sys.executable, str(RECIPES), "--data", "digits", "--steps", "4", "--eval-every", "2",
                             "--samples", "100", "--discriminator-hidden", "8", "16", "--lr-d", "1e-3",
                             "--lr-g", "5e-4", "--lr-decay", "linear", "--ema", "0.9", "0.5", "--pack", "2",
                             "--d-steps", "2", "--label-smoothing", "0.1", "--batch-size", "16",
                             "--betas", "0", "0.99", "--json", str(tmp_path / "r.json")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert [row["step"] for row in rows] == [2, 4]
    assert all(row[key] >= 0 for row in rows for key in ("eval_mode", "train_mode", "ema", "ema_eval"))
    assert all(list(row["averages"]) == ["0.9", "0.5"] for row in rows)
    assert all(row["averages"]["0.9"] == {"ema": row["ema"], "ema_eval": row["ema_eval"]} for row in rows)
    # the two averages differ (decays 0.9 and 0.5 weigh G's recent steps differently)
    assert rows[-1]["averages"]["0.9"] != rows[-1]["averages"]["0.5"]
    assert "pack 2, D steps 2, label smoothing 0.1, batch 16, betas (0.0, 0.99)" in result.stdout
    assert "weight average (decay 0.9, 0.5): train mode / eval mode" in result.stdout
    for row in rows:  # "class: distance", the class whose samples are furthest from its real images
        label, distance = row["worst_class"].split(": ")
        assert 0 <= int(label) < 10 and float(distance) >= 0
    table = [line for line in result.stdout.splitlines() if line.startswith("| 2 |") or line.startswith("| 4 |")]
    assert len(table) == 2
    cells = [f"{cell['ema']:.2f} / {cell['ema_eval']:.2f}" for cell in rows[1]["averages"].values()]
    assert table[1].endswith(f"| {'; '.join(cells)} |")
    assert result.stdout.rstrip().endswith(f"evaluation mode: {rows[0]['eval_mode']:.2f} / {rows[1]['eval_mode']:.2f}")


def test_dcgan_recipe_script_without_a_weight_average_says_so():
    pytest.importorskip("sklearn")
    result = subprocess.run([sys.executable, str(RECIPES), "--data", "digits", "--steps", "2", "--eval-every", "2",
                             "--samples", "100", "--discriminator-hidden", "8", "16", "32", "--generator-hidden",
                             "16", "8", "--no-discriminator-batch-norm"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("| 2 |")]
    assert row.endswith("| n/a (no --ema) |") and "nan" not in result.stdout
    # three convolutions: 8 -> 4 -> 2 -> 1
    assert "D [8, 16, 32]" in result.stdout and "D BatchNorm off" in result.stdout


@pytest.mark.parametrize("arguments, message", [(["--eval-every", "9", "--steps", "4"], "--eval-every"),
                                                (["--lr", "0"], "--lr must be > 0"),
                                                (["--ema", "1"], "--ema must be in (0, 1)"),
                                                (["--ema", "0.999", "0"], "--ema must be in (0, 1)"),
                                                (["--ema", "0.999", "0.999"], "--ema names a decay twice"),
                                                (["--betas", "0.5", "1"], "--betas must be in [0, 1)"),
                                                (["--pack", "0"], "--pack"),
                                                (["--pack", "3"], "must be a multiple of --pack (3)"),
                                                (["--label-smoothing", "0.5"], "--label-smoothing must be in"),
                                                (["--data", "digits", "--discriminator-hidden", "8", "16", "32", "64"],
                                                 "4 convolutions shrink the 8x8 images of --data digits below 1x1")])
def test_dcgan_recipe_script_refuses_nonsense(arguments, message):
    result = subprocess.run([sys.executable, str(RECIPES), *arguments], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr


@pytest.fixture(scope="module")
def two_digit_runs(tmp_path_factory):
    pytest.importorskip("sklearn")
    from minigan.run.cli import main
    runs = []
    for preset in ("digits", "dcgan"):
        out = tmp_path_factory.mktemp(preset)
        extra = ["--preset", "dcgan"] if preset == "dcgan" else []
        assert main(["train", "--data", "digits", *extra, "--steps", "3", "--batch-size", "16",
                     "--no-progress", "--out", str(out)]) == 0
        runs.append(out / "checkpoint.npz")
    return runs


def test_class_samples_draws_a_row_of_real_images_and_one_per_checkpoint(two_digit_runs, tmp_path, capsys):
    script = load_benchmark_script("class_samples")
    checkpoints = [("mlp", two_digit_runs[0]), ("conv", two_digit_runs[1])]
    for class_index in range(10):  # the first class that both tiny generators draw twice
        try:
            labels, images = script.class_rows(checkpoints, class_index, per_row=2)
            break
        except ValueError as error:
            assert "fewer than --per-row 2" in str(error)
    assert labels == ["real", "mlp", "conv"] and images.shape == (6, 64)
    assert 0 <= images.min() and images.max() <= 1 and np.all(np.isfinite(images))
    status = script.main(["--checkpoint", f"mlp={two_digit_runs[0]}", "--checkpoint", f"conv={two_digit_runs[1]}",
                          "--class-index", str(class_index), "--per-row", "2", "--out", str(tmp_path / "c.png")])
    assert status == 0 and (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("arguments, message", [
    (["--class-index", "10"], "--class-index must lie in [0, 10)"),
    (["--class-index", "0", "--per-row", "5000"], "fewer than --per-row 5000"),
])
def test_class_samples_says_what_is_wrong(two_digit_runs, tmp_path, capsys, arguments, message):
    status = load_benchmark_script("class_samples").main(
        ["--checkpoint", f"a={two_digit_runs[0]}", "--out", str(tmp_path / "c.png"), *arguments])
    assert status == 2 and message in capsys.readouterr().err


def test_class_samples_refuses_a_malformed_checkpoint_argument(capsys):
    with pytest.raises(SystemExit) as error:
        load_benchmark_script("class_samples").main(["--checkpoint", "no-label", "--class-index", "0", "--out", "x.png"])
    assert error.value.code == 2 and "expected LABEL=PATH" in capsys.readouterr().err


def test_discriminator_rejection_chooses_by_the_logits():
    script = load_benchmark_script("discriminator_rejection")
    logits = np.array([0.5, -3.0, 2.0, 1.0, -1.0, 0.0, 3.0, -2.0, 1.5, -0.5])
    chosen = script.choices(logits, 4, np.random.default_rng(0))
    first, kept, highest, resampled = (chosen[name] for name in script.SELECTIONS)
    assert first.tolist() == [0, 1, 2, 3]
    assert kept.tolist() == [0, 2, 3, 4]            # index 1 (-3.0) is the pool's lowest 10%
    assert highest.tolist() == [6, 2, 8, 3]         # 3.0, 2.0, 1.5, 1.0
    assert len(resampled) == 4 and set(resampled.tolist()) <= set(range(10))
    # resampling follows exp(logit): over many draws each index's share matches its weight
    many = script.choices(logits, 200_000, np.random.default_rng(1))[script.SELECTIONS[3]]
    shares = np.bincount(many, minlength=10) / len(many)
    weights = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(shares, weights, atol=0.005)


def test_discriminator_rejection_first_row_is_what_minigan_eval_scored(two_digit_runs, capsys):
    script = load_benchmark_script("discriminator_rejection")
    checkpoint = two_digit_runs[1]  # the dcgan preset on digits, 3 steps
    assert script.main(["--checkpoint", str(checkpoint), "--pool", "2"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]  # after the header
    assert [line.split(" | ")[0][2:] for line in lines] == list(script.SELECTIONS)
    recorded = json.loads((checkpoint.parent / "metrics.json").read_text())["frechet_distance"]
    assert float(lines[0].split(" | ")[1]) == pytest.approx(recorded, abs=0.005)
    rows = script.rejection_rows(checkpoint, pool=2)
    assert rows[0]["frechet_distance"] == pytest.approx(recorded, rel=1e-9)
    assert rows[2]["mean_logit"] >= max(rows[0]["mean_logit"], rows[1]["mean_logit"])  # the top n of the pool


def test_discriminator_rejection_says_what_is_wrong(two_digit_runs, tmp_path, capsys):
    from minigan.run.cli import main as minigan
    script = load_benchmark_script("discriminator_rejection")
    assert script.main(["--checkpoint", str(tmp_path / "missing.npz")]) == 2
    assert "not found" in capsys.readouterr().err
    assert minigan(["train", "--data", "digits", "--preset", "vae", "--steps", "2", "--no-progress",
                    "--out", str(tmp_path / "vae")]) == 0
    capsys.readouterr()
    assert script.main(["--checkpoint", str(tmp_path / "vae" / "checkpoint.npz")]) == 2
    assert "holds a VAE, which has no discriminator" in capsys.readouterr().err
    with pytest.raises(SystemExit) as error:
        script.main(["--checkpoint", str(two_digit_runs[1]), "--pool", "1"])
    assert error.value.code == 2 and "--pool must be at least 2" in capsys.readouterr().err
