"""The GAN step: D's and G's gradients against central differences of the losses as
DESIGN.md defines them (float64), the order of updates, the options, sampling, learning."""
import numpy as np
import pytest

import minigan as mg
from minigan.data import RING8
from minigan.gan import GAN
from minigan.gradcheck import compare, numerical_gradient


def softplus(x):
    return np.logaddexp(0.0, x)


def tiny_gan(seed=0, loss="non_saturating", output=None, pack=1, **options):
    be = mg.get_backend("numpy", "float64", seed=seed)
    g_layers = [mg.Dense(3, 5), mg.ReLU(), mg.Dense(5, 4)] + ([output] if output else [])
    G = mg.Sequential(g_layers, backend=be)
    D = mg.Sequential([mg.Dense(4 * pack, 6), mg.LeakyReLU(0.2), mg.Dense(6, 5), mg.Tanh(), mg.Dense(5, 1)],
                      backend=be)
    options.setdefault("d_steps", 1)
    return GAN(G, D, loss=loss, d_opt=RecordingSGD(D, lr=0.05), g_opt=RecordingSGD(G, lr=0.05),
               pack=pack, **options)


class RecordingSGD(mg.SGD):
    """SGD that remembers the gradient it was given and the parameters it produced."""

    def step(self):
        self.seen_grads = self.grads.copy()
        super().step()
        self.params_after = self.params.copy()


def batch(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape)


# L_D(real logits, fake logits) and L_G(fake logits), written out from the papers.
D_LOSSES = {
    "non_saturating": lambda r, f: np.mean(softplus(-r)) + np.mean(softplus(f)),
    "minimax": lambda r, f: np.mean(softplus(-r)) + np.mean(softplus(f)),
    "lsgan": lambda r, f: 0.5 * np.mean((r - 1) ** 2) + 0.5 * np.mean(f ** 2),
    "hinge": lambda r, f: np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f)),
    "wgan": lambda r, f: np.mean(f) - np.mean(r),
    "wgan-gp": lambda r, f: np.mean(f) - np.mean(r),
}
G_LOSSES = {
    "non_saturating": lambda f: np.mean(softplus(-f)),
    "minimax": lambda f: -np.mean(softplus(f)),
    "lsgan": lambda f: 0.5 * np.mean((f - 1) ** 2),
    "hinge": lambda f: -np.mean(f),
    "wgan": lambda f: -np.mean(f),
    "wgan-gp": lambda f: -np.mean(f),
}


def penalty(D, x_hat, weight=10.0):
    out = D.forward(x_hat)
    g = D.backward(np.ones_like(out), param_grads=False)
    return weight * np.mean((np.sqrt(np.sum(g * g, axis=1) + 1e-12) - 1) ** 2)


@pytest.mark.parametrize("pack", [1, 2])
@pytest.mark.parametrize("loss", sorted(D_LOSSES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_whole_step_gradients(loss, seed, pack, monkeypatch):
    options = {"clip_value": 10.0} if loss == "wgan" else {}  # clipping checked separately
    gan = tiny_gan(seed, loss, output=mg.Sigmoid() if seed == 2 else None, pack=pack, **options)
    G, D = gan.generator, gan.discriminator
    real, z = batch(seed + 10, (8, 4)), batch(seed + 20, (8, 3))
    mix = np.random.default_rng(seed).random((8 // pack, 1))
    monkeypatch.setattr(gan.backend, "uniform", lambda shape: mix)  # the interpolation weights
    g_before, d_before = G.params.copy(), D.params.copy()
    gan.train_step(real, z)

    # D's gradient of L_D at the old parameters (packing: consecutive samples side by side).
    G.params[...] = g_before
    D.params[...] = d_before
    fake = G.forward(z).reshape(8 // pack, -1).copy()
    real_in = real.reshape(8 // pack, -1)

    def d_loss():
        value = D_LOSSES[loss](D.forward(real_in), D.forward(fake))
        return value + (penalty(D, mix * real_in + (1 - mix) * fake) if loss == "wgan-gp" else 0.0)

    d_report = compare("D", gan.d_opt.seen_grads, numerical_gradient(d_loss, D.params))
    assert d_report.passed(), d_report

    # G's gradient of L_G with the *updated* D and the same z.
    D.params[...] = gan.d_opt.params_after

    def g_loss():
        return G_LOSSES[loss](D.forward(G.forward(z).reshape(8 // pack, -1)))

    g_report = compare("G", gan.g_opt.seen_grads, numerical_gradient(g_loss, G.params))
    assert g_report.passed(), g_report


def test_generator_step_leaves_discriminator_gradients_alone():
    gan = tiny_gan()
    gan.train_step(batch(1, (6, 4)), batch(2, (6, 3)))
    # After the step D's gradient buffer still holds what its optimizer consumed.
    np.testing.assert_array_equal(gan.discriminator.grads, gan.d_opt.seen_grads)


def test_step_returns_losses_and_probabilities():
    gan = tiny_gan()
    real, z = batch(1, (6, 4)), batch(2, (6, 3))
    D, G = gan.discriminator, gan.generator
    d_real = np.mean(1 / (1 + np.exp(-D.forward(real))))
    d_fake = np.mean(1 / (1 + np.exp(-D.forward(G.forward(z)))))
    stats = gan.train_step(real, z)
    assert set(stats) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert stats["d_real"] == pytest.approx(d_real, rel=1e-12)
    assert stats["d_fake"] == pytest.approx(d_fake, rel=1e-12)
    assert gan.steps == 1


def test_several_discriminator_steps():
    gan = tiny_gan(d_steps=3)
    calls = []
    original = gan.d_opt.step
    gan.d_opt.step = lambda: (calls.append("d"), original())
    gan.g_opt.step = lambda: calls.append("g")
    gan.train_step([batch(i, (5, 4)) for i in range(3)])
    assert calls == ["d", "d", "d", "g"]
    with pytest.raises(ValueError, match="expected 3 real"):
        gan.train_step([batch(0, (5, 4))] * 2)


def test_label_smoothing_changes_only_the_real_target():
    plain, smooth = tiny_gan(), tiny_gan(label_smoothing=0.1)
    real, z = batch(3, (5, 4)), batch(4, (5, 3))
    logits = plain.discriminator.forward(real)
    fake_logits = plain.discriminator.forward(plain.generator.forward(z))
    expected = (np.mean(softplus(logits) - 0.9 * logits) + np.mean(softplus(fake_logits)))
    assert smooth.train_step(real, z)["d_loss"] == pytest.approx(expected, rel=1e-12)


def test_noise_comes_from_the_seeded_backend():
    a, b = tiny_gan(seed=5), tiny_gan(seed=5)
    real = batch(0, (4, 4))
    assert a.train_step(real) == b.train_step(real)
    np.testing.assert_array_equal(a.sample(3), b.sample(3))
    assert a.sample(6).shape == (6, 4)


@pytest.mark.parametrize("make, words", [
    (lambda G, D: GAN(G, D, loss="wasserstein-ish"), "loss must be one of"),
    (lambda G, D: GAN(G, D, loss="wgan", label_smoothing=0.1), "takes no options"),
    (lambda G, D: GAN(G, D, pack=0), "pack must be a positive integer"),
    (lambda G, D: GAN(G, D, pack=2), r"with pack=2 the discriminator must read \(8,\), not \(4,\)"),
    (lambda G, D: GAN(G, D, d_steps=0), "d_steps must be a positive integer"),
    (lambda G, D: GAN(G, D, latent_dim=7), "latent_dim 7"),
    (lambda G, D: GAN(G, D, label_smoothing=0.7), "label_smoothing"),
    (lambda G, D: GAN(D, D), r"makes samples of shape \(1,\)"),
    (lambda G, D: GAN(G, mg.Sequential([mg.Dense(4, 2)], backend=G.backend)), "one logit"),
    (lambda G, D: GAN(G, D, d_opt=mg.SGD(G, 0.1)), "d_opt must optimise the discriminator"),
])
def test_bad_gan_arguments(make, words):
    gan = tiny_gan()
    with pytest.raises(ValueError, match=words):
        make(gan.generator, gan.discriminator)


def test_real_batch_of_the_wrong_width_is_refused():
    gan = tiny_gan()
    with pytest.raises(ValueError, match=r"real batch must have shape \(N, 4\), got \(6, 3\)"):
        gan.train_step(batch(1, (6, 3)), batch(2, (6, 3)))


def test_models_on_different_dtypes_are_refused():
    G = mg.Sequential([mg.Dense(2, 3)], backend=mg.get_backend("numpy", "float32"))
    D = mg.Sequential([mg.Dense(3, 1)], backend=mg.get_backend("numpy", "float64"))
    with pytest.raises(ValueError, match="share one array backend"):
        GAN(G, D)


def test_float32_step_follows_float64_step():
    """The float32 training step computes the same numbers as the float64 one, to float32 precision."""
    results = {}
    for dtype in ("float32", "float64"):
        be = mg.get_backend("numpy", dtype, seed=0)
        G = mg.Sequential([mg.Dense(8, 32), mg.ReLU(), mg.Dense(32, 2)], backend=be)
        D = mg.Sequential([mg.Dense(2, 32), mg.LeakyReLU(0.2), mg.Dense(32, 1)], backend=be)
        gan = GAN(G, D, d_opt=mg.SGD(D, 0.05, momentum=0.5), g_opt=mg.SGD(G, 0.05, momentum=0.5))
        for step in range(5):
            stats = gan.train_step(RING8.sample(64, np.random.default_rng(step)))
        assert G.params.dtype == np.dtype(dtype) and gan.sample(4).dtype == np.dtype(dtype)
        results[dtype] = (G.params.astype(np.float64), stats)
    np.testing.assert_allclose(results["float32"][0], results["float64"][0], rtol=1e-3, atol=1e-5)
    assert results["float32"][1]["d_loss"] == pytest.approx(results["float64"][1]["d_loss"], rel=1e-4)


def test_short_training_run_moves_samples_onto_the_modes():
    be = mg.get_backend("numpy", "float32", seed=0)
    G = mg.Sequential([mg.Dense(8, 64), mg.ReLU(), mg.Dense(64, 64), mg.ReLU(), mg.Dense(64, 2)], backend=be)
    D = mg.Sequential([mg.Dense(2, 64), mg.LeakyReLU(0.2), mg.Dense(64, 64), mg.LeakyReLU(0.2),
                       mg.Dense(64, 1)], backend=be)
    gan = GAN(G, D, d_opt=mg.Adam(D, 2e-3, (0.5, 0.999)), g_opt=mg.Adam(G, 2e-3, (0.5, 0.999)))
    z = np.random.default_rng(1).standard_normal((1000, 8))

    def distance_to_modes():
        x = gan.sample(1000, z)
        return np.median(np.min(np.linalg.norm(x[:, None, :] - RING8.modes[None], axis=2), axis=1))

    before = distance_to_modes()
    for step in range(1500):
        gan.train_step(RING8.sample(128, np.random.default_rng(step), np.float32))
    after = distance_to_modes()
    assert before > 0.4 and after < 0.2, (before, after)
