"""Weight averages: the BatchNorm statistics recomputed for an average (the mean and
unbiased variance of one training-mode pass, checked against NumPy on the layers' inputs),
the mode, momenta and data-parallel hooks left as they were; a GAN's average samples with
statistics of its own and resumes bit-exactly; on every backend."""
import numpy as np
import pytest

import minigan as mg
from minigan.averaging import recompute_batch_norm_statistics, shadow_copy
from minigan.gan import GAN, STATISTICS_SAMPLES, recompute_generator_statistics, statistics_noise


def generator_with_two_norms(backend_name):
    """z (3) -> Dense -> 2x2x2 -> BatchNorm -> ReLU -> ConvT 2->3 (k2 s2) -> 4x4x3 -> BatchNorm,
    float64, with momentum 0.3 so that a forgotten momentum shows."""
    be = mg.get_backend(backend_name, "float64", seed=5)
    return mg.Sequential([mg.Dense(3, 8), mg.Reshape((2, 2, 2)), mg.BatchNorm(2, momentum=0.3), mg.ReLU(),
                          mg.ConvTranspose2d(2, 3, 2, stride=2), mg.BatchNorm(3, momentum=0.3)], backend=be)


def test_recomputed_statistics_are_the_mean_and_unbiased_variance_of_one_pass(backend_name):
    model = generator_with_two_norms(backend_name)
    host, be = model.backend.to_numpy, model.backend
    z = np.random.default_rng(0).standard_normal((7, 3))
    inputs = {index: host(model.forward(be.asarray(z), until=index - 1)) for index in (2, 5)}  # BN inputs
    model.eval()
    recompute_batch_norm_statistics(model, be.asarray(z))
    for index, x in inputs.items():
        x2 = x.reshape(-1, x.shape[-1])  # (N * H * W, C)
        norm = model.layers[index]
        np.testing.assert_allclose(host(norm.running_mean), x2.mean(axis=0), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(host(norm.running_var), x2.var(axis=0, ddof=1), rtol=1e-12)
        assert norm.momentum == 0.3
    assert not model.training and not any(layer.training for layer in model.layers)
    before = host(model.buffers).copy()
    recompute_batch_norm_statistics(model, be.asarray(z))  # the same pass, the same statistics
    np.testing.assert_array_equal(host(model.buffers), before)


def test_recomputing_is_local_and_restores_the_data_parallel_hook(backend_name):
    """A synchronised BatchNorm's all-reduce is not called: every process passes the same
    noise; the hook is back in place afterwards."""
    model = generator_with_two_norms(backend_name)
    def never(sums):
        raise AssertionError("reduce_sums called")
    for index in (2, 5):
        model.layers[index].reduce_sums = never
    recompute_batch_norm_statistics(model, model.backend.asarray(np.ones((4, 3))))
    assert all(model.layers[index].reduce_sums is never for index in (2, 5))
    assert model.training


def test_recomputing_a_model_without_batch_norm_changes_nothing(backend_name):
    be = mg.get_backend(backend_name, "float64", seed=1)
    model = mg.Sequential([mg.Dense(3, 4), mg.Tanh()], backend=be)
    params = be.to_numpy(model.params).copy()
    recompute_batch_norm_statistics(model, be.asarray(np.ones((2, 3))))
    np.testing.assert_array_equal(be.to_numpy(model.params), params)


def test_a_failed_pass_leaves_the_momenta_and_mode_as_they_were(backend_name):
    model = generator_with_two_norms(backend_name).eval()
    with pytest.raises(ValueError, match="model expects input of shape"):
        recompute_batch_norm_statistics(model, model.backend.asarray(np.ones((4, 5))))
    assert not model.training and all(model.layers[index].momentum == 0.3 for index in (2, 5))


def image_gan(backend_name, ema_decay=0.5):
    """generator_with_two_norms against D: Flatten -> Dense(48, 1), Adam, with a weight average."""
    G = generator_with_two_norms(backend_name)
    D = mg.Sequential([mg.Flatten(), mg.Dense(48, 1)], backend=G.backend, input_shape=(4, 4, 3))
    return GAN(G, D, ema_decay=ema_decay)


def real_images(step):
    return np.random.default_rng(step).standard_normal((6, 4, 4, 3))


def test_a_weight_average_samples_with_batch_norm_statistics_of_its_own(backend_name):
    """Samples are the average in evaluation mode with the statistics of one pass over
    `statistics_noise`; its buffers are never averaged; sampling leaves the training stream
    where it was."""
    gan = image_gan(backend_name)
    for step in range(3):
        gan.train_step(real_images(step))
    average, host = gan.models["generator_ema"], gan.backend.to_numpy
    for index in (2, 5):  # still the initial statistics, where G's have moved
        assert np.all(host(average.layers[index].running_mean) == 0)
        assert np.all(host(average.layers[index].running_var) == 1)
        assert np.all(host(gan.generator.layers[index].running_mean) != 0)
    expected_model, by_helper = shadow_copy(average), shadow_copy(average)
    recompute_batch_norm_statistics(expected_model, gan.backend.asarray(statistics_noise(3)))
    recompute_generator_statistics(by_helper)
    np.testing.assert_array_equal(host(by_helper.buffers), host(expected_model.buffers))
    z = np.random.default_rng(9).standard_normal((5, 3))
    expected = host(expected_model.eval().forward(gan.backend.asarray(z)))
    state = gan.backend.rng_state()
    np.testing.assert_array_equal(host(gan.sample(5, z)), expected)
    np.testing.assert_array_equal(host(gan.sample(5, z)), expected)  # the same noise, the same statistics
    assert repr(gan.backend.rng_state()) == repr(state)
    assert statistics_noise(3).shape == (STATISTICS_SAMPLES, 3)


def test_a_run_with_a_batch_norm_average_resumes_bit_exactly(backend_name, tmp_path):
    """Sampling between steps (a progress picture) does not change what training does next."""
    gan = image_gan(backend_name)
    for step in range(2):
        gan.train_step(real_images(step))
    gan.sample(4)
    gan.save(tmp_path / "c.npz")
    loaded = GAN.load(tmp_path / "c.npz")
    for model in (gan, loaded):
        for step in range(2, 4):
            model.train_step(real_images(step))
    for name, network in gan.models.items():
        state, loaded_state = network.state_dict(), loaded.models[name].state_dict()
        assert state.keys() == loaded_state.keys()
        for key in state:
            np.testing.assert_array_equal(state[key], loaded_state[key], err_msg=f"{name} {key}")
    z = np.random.default_rng(2).standard_normal((3, 3))
    np.testing.assert_array_equal(gan.backend.to_numpy(gan.sample(3, z)), loaded.backend.to_numpy(loaded.sample(3, z)))
