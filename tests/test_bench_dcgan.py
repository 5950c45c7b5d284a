"""The DCGAN step benchmark at batch 2: its product list against the layers' sizes, the
tables and JSON minigan-only, and the PyTorch rows from the child process when PyTorch
is installed; the prototype of D's passes side by side (its twin of D, its bit-for-bit
check); the two-core bound and its element-wise probe. Structure only: no assertion on speeds."""
import json
import sys

import numpy as np
import pytest

from minigan.bench.dcgan import MiniganDCGAN, products_flop, step_products

from conftest import load_benchmark_script

G_LAYERS = ["Dense", "Reshape", "BatchNorm", "ReLU", "ConvTranspose2d", "BatchNorm", "ReLU", "ConvTranspose2d", "Tanh"]
D_LAYERS = ["Conv2d", "LeakyReLU", "Conv2d", "BatchNorm", "LeakyReLU", "Flatten", "Dense"]


def load_script():
    return load_benchmark_script("dcgan_step")


def test_products_are_the_layers_products_with_their_counts():
    n = 2
    products = step_products(MiniganDCGAN(n).gan, n)
    # multiply-adds of each layer's forward (dW and dx have the same): N * in * out * the kernel
    # taps on the image over all output positions. k4 s2 p1, 14 -> 7 along an axis: 7 outputs of 4
    # taps less the 2 on the padding, 26 (the bands skip the padding). The one-channel images at
    # 28x28 are padded and gathered whole: 14 outputs of 4 taps, 56.
    macs = {"G 0 Dense": n * 100 * 6272, "G 4 ConvTranspose2d": n * 26 * 26 * 128 * 64,
            "G 7 ConvTranspose2d": n * 56 * 56 * 64 * 1, "D 0 Conv2d": n * 56 * 56 * 1 * 64,
            "D 2 Conv2d": n * 26 * 26 * 64 * 128, "D 6 Dense": n * 6272}
    counts, summed = {}, {}
    for product in products:
        a = product.a[::-1] if product.transpose_a else product.a
        b = product.b[::-1] if product.transpose_b else product.b
        assert a[1] == b[0], product
        layer, kind = product.label.rsplit(" ", 1)
        summed[layer, kind] = summed.get((layer, kind), 0) + a[0] * a[1] * b[1]
        counts[layer, kind] = product.count
    assert all(total == macs[layer] for (layer, _), total in summed.items()), summed
    assert counts == {
        ("G 0 Dense", "forward"): 1, ("G 0 Dense", "dW"): 1,  # no dL/dz
        **{(layer, kind): 1 for layer in ("G 4 ConvTranspose2d", "G 7 ConvTranspose2d")
           for kind in ("forward", "dW", "dx")},
        ("D 0 Conv2d", "forward"): 3, ("D 0 Conv2d", "dW"): 2, ("D 0 Conv2d", "dx"): 1,  # dx in the G step only
        **{(layer, kind): count for layer in ("D 2 Conv2d", "D 6 Dense")
           for kind, count in (("forward", 3), ("dW", 2), ("dx", 3))}}
    # two operations (a multiply and an add) per multiply-add, each product times its count
    assert products_flop(products) == sum(2 * macs[layer] * count for (layer, _), count in counts.items())


def test_minigan_tables_and_json(tmp_path, capsys):
    status = load_script().main(["--batch-sizes", "2", "--rounds", "1", "--repeats", "1", "--no-torch",
                                 "--json", str(tmp_path / "d.json")])
    out = capsys.readouterr().out.splitlines()
    assert status == 0
    step_rows = [line for line in out if line.startswith("| 2 |")]
    assert len(step_rows) == 1
    cells = [cell.strip() for cell in step_rows[0].strip("|").split("|")]
    assert cells[2].endswith(" / n/a") and cells[3:6] == ["n/a"] * 3  # one round: minigan only went first; no torch
    layer_rows = [line.split(" | ")[:2] for line in out if line.startswith(("| G |", "| D |"))]
    assert layer_rows == [["| G", f"{i} {name}"] for i, name in enumerate(G_LAYERS)] + \
        [["| D", f"{i} {name}"] for i, name in enumerate(D_LAYERS)]
    assert any(line.startswith("- CPU: ") for line in out)
    results = json.loads((tmp_path / "d.json").read_text())
    (step,) = results["steps"]
    assert step["minigan_ms"] > 0 and step["torch_ms"] is None and 0 < step["products_share"]
    assert step["products_gflops"] == pytest.approx(products_flop(step_products(MiniganDCGAN(2).gan, 2))
                                                    / step["products_ms"] / 1e6)
    assert cells[6] == f"{step['products_share']:.0%} ({step['products_ms']:.2f} ms, {step['products_gflops']:.0f} GFLOP/s)"
    for row in results["layers"]["2"]:
        assert row["minigan_forward_ms"] > 0 and row["minigan_backward_ms"] > 0


def test_the_data_parallel_side_is_set_against_pytorch_round_by_round():
    from minigan.bench.timing import Run
    script = load_script()
    runs = {"minigan": [Run(10.0, True, 0), Run(12.0, False, 1)], "torch": [Run(9.0, False, 0), Run(8.0, True, 1)],
            "minigan_parallel": [Run(6.0, False, 0), Run(4.0, False, 1)]}
    row = script.step_row(64, runs, [5.0], 10**9)
    assert row["minigan_parallel_ms"] == 5.0 and row["minigan_parallel_spread"] == [4.0, 6.0]
    assert row["minigan_parallel_first_second"] == [None, 5.0]
    assert row["ratio"] == pytest.approx(8.5 / 11.0) and row["parallel_ratio"] == pytest.approx(8.5 / 5.0)
    table = script.format_parallel_table([row], 2, 2).splitlines()
    assert table[0] == ("| batch | minigan, 2 processes ms (spread) | torch, 2 threads ms (spread) "
                        "| ratio torch/minigan |")
    assert table[2] == "| 64 | 5.00 (4.00-6.00) | 8.50 (8.00-9.00) | 1.70x |"
    del runs["minigan_parallel"]
    assert script.step_row(64, runs, [5.0], 10**9)["parallel_ratio"] is None


def test_torch_rows_come_from_the_child_process():
    pytest.importorskip("torch", reason="the PyTorch reference (pip install torch==2.13.0)")
    torch_was_imported = "torch" in sys.modules
    results = load_script().run_benchmark([2], rounds=2, repeats=1, threads=1)
    assert torch_was_imported or "torch" not in sys.modules  # PyTorch ran in the child only
    (step,) = results["steps"]
    for side in ("minigan", "torch"):
        low, high = step[f"{side}_spread"]
        assert 0 < low <= step[f"{side}_ms"] <= high
        assert all(low <= value <= high for value in step[f"{side}_first_second"])  # two rounds: each went first once
    assert step["ratio"] == pytest.approx(step["torch_ms"] / step["minigan_ms"])
    rows = results["layers"][2]
    assert [row["torch_layer"].split()[0] for row in rows] == [str(i) for i in range(9)] + [str(i) for i in range(7)]
    for row in rows:
        channels_first = [list(shape[-1:] + shape[:-1]) if len(shape) == 3 else list(shape)
                          for shape in (row["shape_in"], row["shape_out"])]
        assert row["torch_shapes"] == channels_first, row
        assert row["torch_forward_ms"] > 0 and row["torch_backward_ms"] > 0
    assert results["machine"]["torch"]["threads"] == 1


def test_the_chunk_benchmark_times_every_chunk_size(capsys):
    script = load_benchmark_script("conv_chunks")
    results = script.run_benchmark([2, 3], [None, 0.5, 4], rounds=2, repeats=1, threads=1)
    assert [row["chunk"] for row in results["rows"]] == ["whole batch", "0.5 MiB", "4 MiB (default)"]
    assert [row["chunk_bytes"] for row in results["rows"]] == [None, 2**19, 4 * 2**20]
    for row in results["rows"]:
        for batch in ("2", "3"):
            cell = row[batch]
            assert 0 < cell["low"] <= cell["median"] <= cell["high"]
    assert script.main(["--batch-sizes", "2", "--chunk-mib", "1", "--rounds", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(" | ")[0] for line in out if line.startswith("| ") and "ms" not in line] == \
        ["| whole batch", "| 1 MiB"]
    assert any(line.startswith("- CPU: ") for line in out)


@pytest.mark.parametrize("argv", [["--chunk-mib", "0"], ["--chunk-mib", "-2"], ["--batch-sizes", "0"]])
def test_the_chunk_benchmark_refuses_nonsense(argv, capsys):
    with pytest.raises(SystemExit) as error:
        load_benchmark_script("conv_chunks").main(argv)
    assert error.value.code == 2 and "must be" in capsys.readouterr().err


def test_parallel_passes_prototype_checks_its_gradients_and_times_both_ways(capsys):
    script = load_benchmark_script("parallel_passes")
    assert script.main(["--batch-sizes", "4", "--rounds", "2", "--repeats", "1", "--check"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "float64 gradients bit for bit: yes"
    rows = [line.split(" | ") for line in out if line.startswith(("| passes alone |", "| in the step |"))]
    assert [(row[0], row[1]) for row in rows] == [
        (f"| {what}", name) for what in ("passes alone", "in the step")
        for name in (script.ONE_AFTER_THE_OTHER, script.SIDE_BY_SIDE)]
    assert all(float(row[2].split(" (")[0]) > 0 for row in rows)
    assert any(line.startswith("- im2col copy of D's 64->128 convolution at batch 4: ") for line in out)


def test_the_twin_shares_parameters_and_keeps_its_own_gradients_and_buffers():
    script = load_benchmark_script("parallel_passes")
    D = MiniganDCGAN(2).gan.discriminator
    twin = script.twin(D)
    assert twin.params is D.params and np.shares_memory(twin.layers[0].W, D.params)
    assert not np.shares_memory(twin.grads, D.grads) and not np.shares_memory(twin.layers[3].running_mean, D.buffers)
    x = np.random.default_rng(0).standard_normal((4, 28, 28, 1)).astype(np.float32)
    np.testing.assert_array_equal(twin.forward(x), D.forward(x))  # the same function of the same parameters


def test_the_col2im_benchmark_times_both_orders_for_every_case(capsys):
    script = load_benchmark_script("col2im_orders")
    rows = script.run_benchmark([2, 3], rounds=2, repeats=1)
    assert [(row["case"], row["image"][0]) for row in rows] == [(case[0], batch) for case in script.CASES
                                                                for batch in (2, 3)]
    for row in rows:
        assert row["kernel position"] > 0 and row["tile class"] > 0
        assert row["picked"] == ("kernel position" if row["image"][3] == 1 else "tile class")  # col2im's rule
    script.main(["--batch-sizes", "2", "--rounds", "1", "--repeats", "1"])
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "(2, " in line]
    assert len(table) == len(script.CASES)


def test_the_two_core_bound_is_the_two_thread_products_plus_half_the_one_thread_rest():
    script = load_benchmark_script("two_core_limits")
    row = script.bound_row(step_1=160.0, products_1=110.0, step_2=120.0, products_2=60.0, torch_2=90.0)
    assert row == {"rest_1": 50.0, "rest_2": 60.0, "bound": 85.0, "ratio": 0.75, "ratio_at_bound": 90.0 / 85.0}
    assert script.bound_row(160.0, 110.0, 120.0, 60.0, None)["ratio_at_bound"] is None


@pytest.mark.parametrize("threads", [1, 2])
def test_the_element_wise_probe_computes_its_four_passes_on_either_thread_count(threads):
    chain = load_benchmark_script("two_core_limits").Chain(7)  # odd: the two halves differ by a row
    chain.run(threads)
    expected = np.maximum((chain.x - chain.mean) * chain.scale + np.float32(0.1), 0)
    np.testing.assert_allclose(chain.out, expected, rtol=1e-6, atol=1e-6)


def test_the_two_core_benchmark_prints_both_tables(capsys):
    script = load_benchmark_script("two_core_limits")
    assert script.main(["--batch-sizes", "2", "--rounds", "1", "--repeats", "1", "--no-torch"]) == 0
    out = capsys.readouterr().out.splitlines()
    step_row, chain_row = [line.strip("|").split("|") for line in out if line.startswith("| 2 |")]
    one, two = ([float(value) for value in cell.split(" / ")] for cell in step_row[1:3])
    assert one[2] == pytest.approx(one[0] - one[1], abs=0.011) and two[2] == pytest.approx(two[0] - two[1], abs=0.011)
    assert float(step_row[3]) == pytest.approx(two[1] + one[2] / 2, abs=0.011)
    assert [cell.strip() for cell in step_row[4:]] == ["n/a"] * 3  # no PyTorch
    assert float(chain_row[1]) > 0 and float(chain_row[2]) > 0 and chain_row[3].strip().endswith("x")
    assert any(line.startswith("- CPU: ") for line in out)


def test_the_two_core_benchmark_refuses_a_batch_of_one(capsys):
    with pytest.raises(SystemExit) as error:
        load_benchmark_script("two_core_limits").main(["--batch-sizes", "1", "--no-torch"])
    assert error.value.code == 2 and "at least 2" in capsys.readouterr().err


def test_the_numpy_code_side_is_set_against_the_compiled_passes_round_by_round():
    from minigan.bench.timing import Run
    script = load_script()
    runs = {"minigan": [Run(10.0, True, 0), Run(12.0, False, 1)], "torch": [Run(9.0, False, 0), Run(8.0, True, 1)],
            "minigan_numpy_code": [Run(15.0, False, 0), Run(17.0, True, 1)]}
    row = script.step_row(64, runs, [5.0], 10**9)
    assert row["minigan_numpy_code_ms"] == 16.0 and row["compiled_speedup"] == pytest.approx(16.0 / 11.0)
    table = script.format_numpy_code_table([row]).splitlines()
    assert table[2] == "| 64 | 11.00 (10.00-12.00) | 16.00 (15.00-17.00) | 1.45x | 0.77x | 0.53x |"
    del runs["minigan_numpy_code"]
    assert script.step_row(64, runs, [5.0], 10**9)["compiled_speedup"] is None


def test_the_numpy_code_side_runs_where_the_passes_are_compiled(capsys):
    from minigan.cpu_kernels import available
    script = load_script()
    argv = ["--batch-sizes", "2", "--rounds", "1", "--repeats", "1", "--no-torch", "--no-layers", "--numpy-code"]
    if not available():
        with pytest.raises(SystemExit):
            script.main(argv)
        assert "pip install 'minigan[fast]'" in capsys.readouterr().err
        return
    assert script.main(argv) == 0
    out = capsys.readouterr().out
    assert "## minigan's compiled passes against its NumPy code (the same bits)" in out
    assert any(line.startswith("- compiled CPU passes: Numba ") for line in out.splitlines())
    assert MiniganDCGAN(2, compiled=False).backend.compiled is False
