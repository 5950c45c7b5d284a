"""The quality benchmark script end to end on a tiny budget (no quality assertions)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

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
                             "--lr-g", "5e-4", "--lr-decay", "linear", "--ema", "0.9",
                             "--json", str(tmp_path / "r.json")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert [row["step"] for row in rows] == [2, 4]
    assert all(row[key] >= 0 for row in rows for key in ("eval_mode", "train_mode", "ema"))
    table = [line for line in result.stdout.splitlines() if line.startswith("| 2 |") or line.startswith("| 4 |")]
    assert len(table) == 2
    assert result.stdout.rstrip().endswith(f"evaluation mode: {rows[0]['eval_mode']:.2f} / {rows[1]['eval_mode']:.2f}")


def test_dcgan_recipe_script_without_a_weight_average_says_so():
    pytest.importorskip("sklearn")
    result = subprocess.run([sys.executable, str(RECIPES), "--data", "digits", "--steps", "2", "--eval-every", "2",
                             "--samples", "100", "--discriminator-hidden", "8", "16", "--generator-hidden", "16", "8"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("| 2 |")]
    assert row.endswith("| n/a (no --ema) |") and "nan" not in result.stdout


@pytest.mark.parametrize("arguments, message", [(["--eval-every", "9", "--steps", "4"], "--eval-every"),
                                                (["--lr", "0"], "--lr must be > 0"),
                                                (["--ema", "1"], "--ema must be in [0, 1)")])
def test_dcgan_recipe_script_refuses_nonsense(arguments, message):
    result = subprocess.run([sys.executable, str(RECIPES), *arguments], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr
