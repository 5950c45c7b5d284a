"""The GAN step: D's and G's gradients against central differences of the losses as
DESIGN.md defines them (float64), two passes through a D whose rows depend on each other,
the whole step against PyTorch, the order of updates, the options, sampling, learning.
Every test runs on each available backend (`backend_name`, tests/conftest.py)."""
import numpy as np
import pytest

import minigan as mg
from minigan.data import RING8
from minigan.gan import GAN
from minigan.gradcheck import compare, numerical_gradient


def softplus(x):
    return np.logaddexp(0.0, x)


def tiny_gan(backend_name, seed=0, loss="non_saturating", output=None, pack=1, discriminator=None,
             **options):
    """G: 3 -> 4 and D: 4 * pack -> 1 (or the given `discriminator` layers), both on a float64
    backend seeded with `seed`, each with a `RecordingSGD`."""
    be = mg.get_backend(backend_name, "float64", seed=seed)
    g_layers = [mg.Dense(3, 5), mg.ReLU(), mg.Dense(5, 4)] + ([output] if output else [])
    G = mg.Sequential(g_layers, backend=be)
    d_layers = discriminator or [mg.Dense(4 * pack, 6), mg.LeakyReLU(0.2), mg.Dense(6, 5), mg.Tanh(),
                                 mg.Dense(5, 1)]
    D = mg.Sequential(d_layers, backend=be)
    options.setdefault("d_steps", 1)
    return GAN(G, D, loss=loss, d_opt=RecordingSGD(D, lr=0.05), g_opt=RecordingSGD(G, lr=0.05),
               pack=pack, **options)


class RecordingSGD(mg.SGD):
    """SGD that remembers the gradient it was given and the parameters it produced."""

    def step(self):
        self.seen_grads = self.grads.copy()
        super().step()
        self.params_after = self.params.copy()


class CenterBatch(mg.Layer):
    """y = x - mean of x over the batch: every output row depends on every input row.
    Backward: dx = dy - mean of dy over the batch. No parameters."""

    rows_independent = False

    def forward(self, x):
        return x - x.mean(axis=0, keepdims=True)

    def backward(self, dy, grads="add", input_grad=True):
        return dy - dy.mean(axis=0, keepdims=True)


def batch(backend, seed, shape):
    """A fixed N(0, 1) batch (drawn on the host from `seed`) as an array of `backend`."""
    return backend.asarray(np.random.default_rng(seed).standard_normal(shape))


def outputs(model, x):
    """model(x) as a host NumPy array, for the NumPy formulas below."""
    return model.backend.to_numpy(model.forward(x))


# L_D(real logits, fake logits) and L_G(fake logits) on host arrays, written out from the papers.
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
    g = D.backend.to_numpy(D.backward(D.backend.xp.ones_like(out), param_grads=False))
    return weight * np.mean((np.sqrt(np.sum(g * g, axis=1) + 1e-12) - 1) ** 2)


@pytest.mark.parametrize("pack", [1, 2])
@pytest.mark.parametrize("loss", sorted(D_LOSSES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_whole_step_gradients(backend_name, loss, seed, pack, monkeypatch):
    """D's gradient is that of L_D at the old parameters, G's that of L_G with the updated D,
    for every loss, with and without packing (and the penalty for wgan-gp)."""
    options = {"clip_value": 10.0} if loss == "wgan" else {}  # clipping checked separately
    gan = tiny_gan(backend_name, seed, loss, output=mg.Sigmoid() if seed == 2 else None, pack=pack,
                   **options)
    G, D, be = gan.generator, gan.discriminator, gan.backend
    real, z = batch(be, seed + 10, (8, 4)), batch(be, seed + 20, (8, 3))
    mix = be.asarray(np.random.default_rng(seed).random((8 // pack, 1)))
    monkeypatch.setattr(be, "uniform", lambda shape: mix)  # the interpolation weights
    g_before, d_before = G.params.copy(), D.params.copy()
    gan.train_step(real, z)

    # D's gradient of L_D at the old parameters (packing: consecutive samples side by side).
    G.params[...] = g_before
    D.params[...] = d_before
    fake = G.forward(z).reshape(8 // pack, -1).copy()
    real_in = real.reshape(8 // pack, -1)

    def d_loss():
        value = D_LOSSES[loss](outputs(D, real_in), outputs(D, fake))
        return value + (penalty(D, mix * real_in + (1 - mix) * fake) if loss == "wgan-gp" else 0.0)

    d_report = compare("D", gan.d_opt.seen_grads, numerical_gradient(d_loss, D.params))
    assert d_report.passed(), d_report

    # G's gradient of L_G with the *updated* D and the same z.
    D.params[...] = gan.d_opt.params_after

    def g_loss():
        return G_LOSSES[loss](outputs(D, G.forward(z).reshape(8 // pack, -1)))

    g_report = compare("G", gan.g_opt.seen_grads, numerical_gradient(g_loss, G.params))
    assert g_report.passed(), g_report


def two_heads(pack=1):
    """D with two heads (`Branches`): two small MLPs on the same input, (N, 2) logits."""
    return [mg.Branches([[mg.Dense(4 * pack, 6), mg.LeakyReLU(0.2), mg.Dense(6, 1)],
                         [mg.Dense(4 * pack, 3), mg.Tanh(), mg.Dense(3, 1)]])]


@pytest.mark.parametrize("pack", [1, 2])
@pytest.mark.parametrize("loss", sorted(set(D_LOSSES) - {"wgan-gp"}))
def test_whole_step_gradients_with_two_heads(backend_name, loss, pack):
    """A discriminator with two heads: every loss is the mean of its two heads' losses (the
    formulas above, whose means run over both columns of the (N, 2) logits), for D's step
    in one pass over [real; fake] and for G's step through the updated D."""
    gan = tiny_gan(backend_name, 4, loss, pack=pack, discriminator=two_heads(pack),
                   **({"clip_value": 10.0} if loss == "wgan" else {}))
    G, D, be = gan.generator, gan.discriminator, gan.backend
    assert D.output_shape == (2,) and D.rows_independent
    real, z = batch(be, 50, (8, 4)), batch(be, 60, (8, 3))
    g_before, d_before = G.params.copy(), D.params.copy()
    stats = gan.train_step(real, z)
    G.params[...] = g_before
    D.params[...] = d_before
    fake = G.forward(z).reshape(8 // pack, -1).copy()
    real_in = real.reshape(8 // pack, -1)

    def d_loss():
        return D_LOSSES[loss](outputs(D, real_in), outputs(D, fake))

    assert stats["d_loss"] == pytest.approx(d_loss(), rel=1e-12)
    d_report = compare("D", gan.d_opt.seen_grads, numerical_gradient(d_loss, D.params))
    assert d_report.passed(), d_report
    D.params[...] = gan.d_opt.params_after

    def g_loss():
        return G_LOSSES[loss](outputs(D, G.forward(z).reshape(8 // pack, -1)))

    assert stats["g_loss"] == pytest.approx(g_loss(), rel=1e-12)
    g_report = compare("G", gan.g_opt.seen_grads, numerical_gradient(g_loss, G.params))
    assert g_report.passed(), g_report


def test_the_gradient_penalty_needs_one_head(backend_name):
    with pytest.raises(ValueError, match=r"gradient penalty needs a critic with one output, not \(2,\)"):
        tiny_gan(backend_name, loss="wgan-gp", discriminator=two_heads())


@pytest.mark.parametrize("loss", ["non_saturating", "hinge"])
def test_discriminator_with_dependent_rows_runs_two_passes(backend_name, loss):
    """With a layer whose rows depend on each other (CenterBatch) in D, the D step's gradient
    is that of L_D with D run on the real and on the fake batch separately (two passes), not
    on [real; fake] (one pass); the one-pass gradient differs by far more than the tolerance,
    so the check tells the two apart. G's gradient, through the updated D on the fake batch
    alone, is checked too."""
    n = 8
    gan = tiny_gan(backend_name, seed=3, loss=loss, discriminator=[
        mg.Dense(4, 6), CenterBatch(), mg.Tanh(), mg.Dense(6, 1)])
    G, D, be = gan.generator, gan.discriminator, gan.backend
    assert not D.rows_independent
    real, z = batch(be, 30, (n, 4)), batch(be, 40, (n, 3))
    g_before, d_before = G.params.copy(), D.params.copy()
    stats = gan.train_step(real, z)

    G.params[...] = g_before
    D.params[...] = d_before
    fake = G.forward(z).copy()

    def two_passes():
        return D_LOSSES[loss](outputs(D, real), outputs(D, fake))

    def one_pass():
        logits = outputs(D, be.xp.concatenate([real, fake]))  # (2 n, 1), centred over both halves
        return D_LOSSES[loss](logits[:n], logits[n:])

    assert stats["d_loss"] == pytest.approx(two_passes(), rel=1e-12)
    two = compare("D, two passes", gan.d_opt.seen_grads, numerical_gradient(two_passes, D.params))
    assert two.passed(), two
    one = compare("D, one pass", gan.d_opt.seen_grads, numerical_gradient(one_pass, D.params))
    assert one.worst().ratio > 1e3, one  # the step is not the one-pass gradient

    D.params[...] = gan.d_opt.params_after

    def g_loss():
        return G_LOSSES[loss](outputs(D, G.forward(z)))

    g_report = compare("G", gan.g_opt.seen_grads, numerical_gradient(g_loss, G.params))
    assert g_report.passed(), g_report


def torch_twin(model, torch_model, torch):
    """Copies `model`'s parameters into `torch_model`'s, which come in the same order (each
    Dense's W and b, each Linear's weight and bias): torch's Linear weight is W.T."""
    with torch.no_grad():
        for (_, value, _), param in zip(model.named_parameters(), torch_model.parameters(), strict=True):
            param.copy_(torch.from_numpy(model.backend.to_numpy(value).T.copy()))


@pytest.mark.parametrize("pack", [1, 2])
@pytest.mark.parametrize("loss", ["non_saturating", "minimax"])
def test_mlp_gan_step_matches_pytorch_float64(backend_name, loss, pack):
    """Three `train_step`s of an MLP GAN with Adam give PyTorch's parameters (relative error
    <= 1e-12 for every parameter array) and PyTorch's losses and D outputs (1e-12), with
    DESIGN.md's step written out in torch: D on real and detached fake, then G through the
    updated D on the same fake; PacGAN packing as x.reshape(N / pack, pack * F)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    n, lr, betas = 8, 2e-3, (0.5, 0.999)
    be = mg.get_backend(backend_name, "float64", seed=0)
    G = mg.Sequential([mg.Dense(3, 8), mg.ReLU(), mg.Dense(8, 4), mg.Tanh()], backend=be)
    D = mg.Sequential([mg.Dense(4 * pack, 8), mg.LeakyReLU(0.2), mg.Dense(8, 1)], backend=be)
    gan = GAN(G, D, loss=loss, pack=pack, d_opt=mg.Adam(D, lr, betas), g_opt=mg.Adam(G, lr, betas))
    torch_G = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 4), nn.Tanh()).double()
    torch_D = nn.Sequential(nn.Linear(4 * pack, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1)).double()
    torch_twin(G, torch_G, torch)
    torch_twin(D, torch_D, torch)
    torch_d_opt = torch.optim.Adam(torch_D.parameters(), lr=lr, betas=betas)
    torch_g_opt = torch.optim.Adam(torch_G.parameters(), lr=lr, betas=betas)
    bce = nn.BCEWithLogitsLoss()

    def packed(x):  # (N, F) -> (N / pack, pack * F): consecutive samples side by side
        return x.reshape(n // pack, pack * x.shape[1])

    rng = np.random.default_rng(7)
    for step in range(3):
        real, z = rng.uniform(-1, 1, (n, 4)), rng.standard_normal((n, 3))
        stats = gan.train_step(be.asarray(real), be.asarray(z))

        fake = torch_G(torch.from_numpy(z))
        torch_d_opt.zero_grad()
        real_logits = torch_D(packed(torch.from_numpy(real)))
        fake_logits = torch_D(packed(fake.detach()))
        d_loss = (bce(real_logits, torch.ones_like(real_logits))
                  + bce(fake_logits, torch.zeros_like(fake_logits)))
        d_loss.backward()
        torch_d_opt.step()
        torch_g_opt.zero_grad()
        logits = torch_D(packed(fake))  # the updated D, the same fake
        if loss == "non_saturating":
            g_loss = bce(logits, torch.ones_like(logits))
        else:  # minimax: minimise mean log(1 - D(fake)) = -BCE(D(fake), 0)
            g_loss = -bce(logits, torch.zeros_like(logits))
        g_loss.backward()
        torch_g_opt.step()  # only G's optimizer steps

        assert stats["d_loss"] == pytest.approx(d_loss.item(), rel=1e-12), step
        assert stats["g_loss"] == pytest.approx(g_loss.item(), rel=1e-12), step
        assert stats["d_real"] == pytest.approx(torch.sigmoid(real_logits).mean().item(), rel=1e-12)
        assert stats["d_fake"] == pytest.approx(torch.sigmoid(fake_logits).mean().item(), rel=1e-12)

    for which, model, torch_model in (("G", G, torch_G), ("D", D, torch_D)):
        for (name, ours, _), theirs in zip(model.named_parameters(), torch_model.parameters(), strict=True):
            theirs = theirs.detach().numpy().T  # (in, out) like W; a bias is unchanged
            error = np.max(np.abs(be.to_numpy(ours) - theirs)) / np.max(np.abs(theirs))
            assert error <= 1e-12, f"{which}.{name}: relative error {error:.2e}"


def test_generator_step_leaves_discriminator_gradients_alone(backend_name):
    """The G step backpropagates through D without touching D's gradient buffer."""
    gan = tiny_gan(backend_name)
    be = gan.backend
    gan.train_step(batch(be, 1, (6, 4)), batch(be, 2, (6, 3)))
    # After the step D's gradient buffer still holds what its optimizer consumed.
    np.testing.assert_array_equal(be.to_numpy(gan.discriminator.grads), be.to_numpy(gan.d_opt.seen_grads))


def test_step_returns_losses_and_probabilities(backend_name):
    """The statistics are the losses and D's mean probabilities on the real and fake batch."""
    gan = tiny_gan(backend_name)
    be = gan.backend
    real, z = batch(be, 1, (6, 4)), batch(be, 2, (6, 3))
    D, G = gan.discriminator, gan.generator
    d_real = np.mean(1 / (1 + np.exp(-outputs(D, real))))
    d_fake = np.mean(1 / (1 + np.exp(-outputs(D, G.forward(z)))))
    stats = gan.train_step(real, z)
    assert set(stats) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert stats["d_real"] == pytest.approx(d_real, rel=1e-12)
    assert stats["d_fake"] == pytest.approx(d_fake, rel=1e-12)
    assert gan.steps == 1


def test_several_discriminator_steps(backend_name):
    """d_steps=3: three D updates, then one G update; one real batch per D step is required."""
    gan = tiny_gan(backend_name, d_steps=3)
    be = gan.backend
    calls = []
    original = gan.d_opt.step
    gan.d_opt.step = lambda: (calls.append("d"), original())
    gan.g_opt.step = lambda: calls.append("g")
    gan.train_step([batch(be, i, (5, 4)) for i in range(3)])
    assert calls == ["d", "d", "d", "g"]
    with pytest.raises(ValueError, match="expected 3 real"):
        gan.train_step([batch(be, 0, (5, 4))] * 2)


def test_label_smoothing_changes_only_the_real_target(backend_name):
    """One-sided label smoothing 0.1: the real term's target is 0.9, the fake term unchanged."""
    plain, smooth = tiny_gan(backend_name), tiny_gan(backend_name, label_smoothing=0.1)
    be = plain.backend
    real, z = batch(be, 3, (5, 4)), batch(be, 4, (5, 3))
    logits = outputs(plain.discriminator, real)
    fake_logits = outputs(plain.discriminator, plain.generator.forward(z))
    expected = (np.mean(softplus(logits) - 0.9 * logits) + np.mean(softplus(fake_logits)))
    assert smooth.train_step(real, z)["d_loss"] == pytest.approx(expected, rel=1e-12)


def test_noise_comes_from_the_seeded_backend(backend_name):
    """Without z, two GANs on equally seeded backends draw the same noise and samples."""
    a, b = tiny_gan(backend_name, seed=5), tiny_gan(backend_name, seed=5)
    real = batch(a.backend, 0, (4, 4))
    assert a.train_step(real) == b.train_step(real)
    np.testing.assert_array_equal(a.backend.to_numpy(a.sample(3)), b.backend.to_numpy(b.sample(3)))
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
    (lambda G, D: GAN(G, mg.Sequential([mg.Dense(4, 6), mg.Reshape((2, 3))], backend=G.backend)),
     r"one logit per input \(or one per head\), not \(2, 3\)"),
    (lambda G, D: GAN(G, D, d_opt=mg.SGD(G, 0.1)), "d_opt must optimise the discriminator"),
])
def test_bad_gan_arguments(backend_name, make, words):
    """Each bad argument is refused with a message that names it."""
    gan = tiny_gan(backend_name)
    with pytest.raises(ValueError, match=words):
        make(gan.generator, gan.discriminator)


def test_real_batch_of_the_wrong_width_is_refused(backend_name):
    """A real batch whose rows do not have the generator's output shape is refused."""
    gan = tiny_gan(backend_name)
    with pytest.raises(ValueError, match=r"real batch must have shape \(N, 4\) with N >= 1, got \(6, 3\)"):
        gan.train_step(batch(gan.backend, 1, (6, 3)), batch(gan.backend, 2, (6, 3)))


def test_models_on_different_dtypes_are_refused(backend_name):
    """G and D must share one backend and dtype."""
    G = mg.Sequential([mg.Dense(2, 3)], backend=mg.get_backend(backend_name, "float32"))
    D = mg.Sequential([mg.Dense(3, 1)], backend=mg.get_backend(backend_name, "float64"))
    with pytest.raises(ValueError, match="share one array backend"):
        GAN(G, D)


def test_float32_step_follows_float64_step(backend_name):
    """The float32 training step computes the same numbers as the float64 one, to float32 precision."""
    results = {}
    for dtype in ("float32", "float64"):
        be = mg.get_backend(backend_name, dtype, seed=0)
        G = mg.Sequential([mg.Dense(8, 32), mg.ReLU(), mg.Dense(32, 2)], backend=be)
        D = mg.Sequential([mg.Dense(2, 32), mg.LeakyReLU(0.2), mg.Dense(32, 1)], backend=be)
        gan = GAN(G, D, d_opt=mg.SGD(D, 0.05, momentum=0.5), g_opt=mg.SGD(G, 0.05, momentum=0.5))
        for step in range(5):
            stats = gan.train_step(be.asarray(RING8.sample(64, np.random.default_rng(step))))
        assert G.params.dtype == np.dtype(dtype) and gan.sample(4).dtype == np.dtype(dtype)
        results[dtype] = (be.to_numpy(G.params).astype(np.float64), stats)
    np.testing.assert_allclose(results["float32"][0], results["float64"][0], rtol=1e-3, atol=1e-5)
    assert results["float32"][1]["d_loss"] == pytest.approx(results["float64"][1]["d_loss"], rel=1e-4)


def test_short_training_run_moves_samples_onto_the_modes(backend32):
    """1,500 float32 Adam steps on the 8-mode ring bring the median sample within 0.2 of a mode."""
    be = backend32
    G = mg.Sequential([mg.Dense(8, 64), mg.ReLU(), mg.Dense(64, 64), mg.ReLU(), mg.Dense(64, 2)], backend=be)
    D = mg.Sequential([mg.Dense(2, 64), mg.LeakyReLU(0.2), mg.Dense(64, 64), mg.LeakyReLU(0.2),
                       mg.Dense(64, 1)], backend=be)
    gan = GAN(G, D, d_opt=mg.Adam(D, 2e-3, (0.5, 0.999)), g_opt=mg.Adam(G, 2e-3, (0.5, 0.999)))
    z = be.asarray(np.random.default_rng(1).standard_normal((1000, 8)))

    def distance_to_modes():
        x = be.to_numpy(gan.sample(1000, z))
        return np.median(np.min(np.linalg.norm(x[:, None, :] - RING8.modes[None], axis=2), axis=1))

    before = distance_to_modes()
    for step in range(1500):
        gan.train_step(be.asarray(RING8.sample(128, np.random.default_rng(step), np.float32)))
    after = distance_to_modes()
    assert before > 0.4 and after < 0.2, (before, after)


def test_the_weight_average_follows_the_generator_and_generates_the_samples(backend_name, tmp_path):
    """generator_ema = decay * generator_ema + (1 - decay) * G after every G step; training
    itself (G, D, the random stream) is unchanged by it; samples come from the average;
    checkpoints keep it."""
    def build(ema_decay):
        be = mg.get_backend(backend_name, "float64", seed=3)
        G = mg.Sequential([mg.Dense(3, 8), mg.ReLU(), mg.Dense(8, 4)], backend=be)
        D = mg.Sequential([mg.Dense(4, 8), mg.LeakyReLU(0.2), mg.Dense(8, 1)], backend=be)
        return GAN(G, D, ema_decay=ema_decay)

    plain, averaged = build(0.0), build(0.9)
    host = averaged.backend.to_numpy
    expected = host(averaged.generator.params).copy()
    real = np.random.default_rng(0).standard_normal((6, 4))
    for _ in range(3):
        plain.train_step(real)
        averaged.train_step(real)
        expected = 0.9 * expected + 0.1 * host(averaged.generator.params)
    np.testing.assert_allclose(host(averaged.models["generator_ema"].params), expected, rtol=1e-12)
    assert np.array_equal(host(plain.generator.params), host(averaged.generator.params))
    assert np.array_equal(host(plain.discriminator.params), host(averaged.discriminator.params))
    z = np.random.default_rng(1).standard_normal((5, 3))
    ema_out = host(averaged.models["generator_ema"].forward(averaged.backend.asarray(z)))
    np.testing.assert_array_equal(host(averaged.sample(5, z)), ema_out)
    averaged.save(tmp_path / "c.npz")
    loaded = GAN.load(tmp_path / "c.npz")
    assert loaded.ema_decay == 0.9
    np.testing.assert_array_equal(host(loaded.sample(5, z)), ema_out)
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\), got 1.0"):
        build(1.0)
