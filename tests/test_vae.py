"""The VAE: its step's gradients against central differences of the loss written out in
NumPy (float64), three steps against PyTorch, the KL and the importance-weighted bound
against Monte Carlo, shapes, modes, checkpoints, learning, and every refused input.
Numeric tests run on each available backend (`backend_name` / `BACKENDS`, tests/conftest.py)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigan as mg
from minigan import vae as vae_module
from minigan.checkpoint import load_checkpoint
from minigan.gradcheck import compare, numerical_gradient
from minigan.vae import VAE, log_mean_exp

from conftest import BACKENDS

LOG_2PI = math.log(2 * math.pi)
LIKELIHOODS = ("bernoulli", "gaussian", "gaussian_learned")


class RecordingSGD(mg.SGD):
    """SGD that remembers the gradient it was given."""

    def step(self):
        self.seen_grads = self.grads.copy()
        super().step()


def networks(be, shape=(4,), latent=2, hidden=5):
    """An encoder (N, *shape) -> (N, 2 latent) and a decoder (N, latent) -> (N, *shape)."""
    width = math.prod(shape)
    flat = len(shape) == 1
    E = mg.Sequential(([] if flat else [mg.Flatten()]) + [mg.Dense(width, hidden), mg.Tanh(),
                                                          mg.Dense(hidden, 2 * latent)],
                      backend=be, input_shape=shape)
    D = mg.Sequential([mg.Dense(latent, hidden), mg.Tanh(), mg.Dense(hidden, width)]
                      + ([] if flat else [mg.Reshape(shape)]), backend=be)
    return E, D


def tiny_vae(backend_name, likelihood="bernoulli", beta=1.0, shape=(4,), seed=0, dtype="float64",
             log_sigma=0.3, recording=True):
    be = mg.get_backend(backend_name, dtype, seed=seed)
    E, D = networks(be, shape)
    optimizers = ({"encoder_opt": RecordingSGD(E, lr=0.05), "decoder_opt": RecordingSGD(D, lr=0.05)}
                  if recording else {})
    return VAE(E, D, likelihood=likelihood, beta=beta, log_sigma=log_sigma, **optimizers)


def data(likelihood, shape, seed=0):
    """Host float64 data: grey levels in [0, 1] for Bernoulli, N(0.5, 1) values otherwise."""
    rng = np.random.default_rng(seed)
    return rng.random(shape) if likelihood == "bernoulli" else rng.normal(0.5, 1.0, shape)


def outputs(model, x):
    """model(x) as a host NumPy array."""
    return model.backend.to_numpy(model.forward(model.backend.asarray(x)))


def log_p_x(likelihood, x, out, log_sigma):
    """log p(x | decoder output) per example, written out from the densities (no softplus)."""
    n = x.shape[0]
    x, out = x.reshape(n, -1), out.reshape(n, -1)
    if likelihood == "bernoulli":
        p = 1 / (1 + np.exp(-out))
        return np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=1)
    sigma = math.exp(log_sigma)
    return np.sum(-0.5 * ((x - out) / sigma) ** 2 - math.log(sigma) - 0.5 * LOG_2PI, axis=1)


def numpy_loss(E, D, x, eps, likelihood, beta, log_sigma):
    """The batch loss mean_i[-log p(x_i|z_i) + beta KL_i], z_i = mu_i + exp(logvar_i / 2) eps_i."""
    h = outputs(E, x)
    latent = h.shape[1] // 2
    mu, logvar = h[:, :latent], h[:, latent:]
    z = mu + np.exp(logvar / 2) * eps
    kl = -0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar), axis=1)
    return np.mean(-log_p_x(likelihood, x, outputs(D, z), log_sigma) + beta * kl)


# ---------------------------------------------------------------- 1. gradients


@pytest.mark.parametrize("shape", [(4,), (2, 3, 1)])
@pytest.mark.parametrize("beta", [1.0, 0.5])
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_step_gradients_are_those_of_the_loss(backend_name, likelihood, beta, shape):
    """The gradients both optimizers (and a learned log sigma's) receive are the central
    differences of the loss written out independently in NumPy, at the pre-step parameters."""
    vae = tiny_vae(backend_name, likelihood, beta, shape, seed=3)
    E, D = vae.encoder, vae.decoder
    x = data(likelihood, (6, *shape), seed=1)
    eps = np.random.default_rng(2).standard_normal((6, vae.latent_dim))
    before = {name: model.params.copy() for name, model in vae.models.items()}
    stats = vae.train_step(x, eps)
    for name, model in vae.models.items():
        model.params[...] = before[name]

    def log_sigma():
        return float(vae.models["log_sigma"].params[0]) if likelihood == "gaussian_learned" else 0.3

    def loss():
        return numpy_loss(E, D, x, eps, likelihood, beta, log_sigma())

    assert stats["loss"] == pytest.approx(loss(), rel=1e-12)
    for name, optimizer in (("encoder", vae.encoder_opt), ("decoder", vae.decoder_opt)):
        report = compare(name, optimizer.seen_grads, numerical_gradient(loss, vae.models[name].params))
        assert report.passed(), report
    if likelihood == "gaussian_learned":
        holder = vae.models["log_sigma"]
        report = compare("log_sigma", holder.grads, numerical_gradient(loss, holder.params))
        assert report.passed(), report


# ---------------------------------------------------------------- 2. against PyTorch


def torch_twin(model, torch_model, torch):
    """Copies `model`'s Dense parameters into `torch_model`'s Linear ones (weight = W.T)."""
    with torch.no_grad():
        for (_, value, _), param in zip(model.named_parameters(), torch_model.parameters(), strict=True):
            param.copy_(torch.from_numpy(model.backend.to_numpy(value).T.copy()))


@pytest.mark.parametrize("beta", [1.0, 0.5])
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_three_steps_match_pytorch_float64(backend_name, likelihood, beta):
    """Three Adam steps of a 6-8-4 / 2-8-6 ReLU VAE with the same eps give PyTorch's losses
    (1e-10) and parameters (1e-9 relative). Torch runs one Adam over all parameters, ours
    one per network: per-element Adam makes them the same."""
    torch = pytest.importorskip("torch", reason="PyTorch is the independent oracle (pip install torch)")
    nn, F = torch.nn, torch.nn.functional
    n, lr, log_sigma = 5, 1e-2, -0.4
    be = mg.get_backend(backend_name, "float64", seed=0)
    E = mg.Sequential([mg.Dense(6, 8), mg.ReLU(), mg.Dense(8, 4)], backend=be)
    D = mg.Sequential([mg.Dense(2, 8), mg.ReLU(), mg.Dense(8, 6)], backend=be)
    vae = VAE(E, D, likelihood=likelihood, beta=beta, log_sigma=log_sigma,
              encoder_opt=mg.Adam(E, lr), decoder_opt=mg.Adam(D, lr))
    torch_E = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4)).double()
    torch_D = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 6)).double()
    torch_twin(E, torch_E, torch)
    torch_twin(D, torch_D, torch)
    torch_log_sigma = nn.Parameter(torch.tensor(log_sigma, dtype=torch.float64))
    params = [*torch_E.parameters(), *torch_D.parameters()]
    if likelihood == "gaussian_learned":
        params.append(torch_log_sigma)
    torch_opt = torch.optim.Adam(params, lr=lr)

    rng = np.random.default_rng(7)
    for step in range(3):
        x = (rng.random((n, 6)) < 0.4).astype(float) if likelihood == "bernoulli" else rng.normal(0, 1, (n, 6))
        eps = rng.standard_normal((n, 2))
        stats = vae.train_step(be.asarray(x), be.asarray(eps))

        tx, teps = torch.from_numpy(x), torch.from_numpy(eps)
        torch_opt.zero_grad()
        h = torch_E(tx)
        mu, logvar = h[:, :2], h[:, 2:]
        out = torch_D(mu + torch.exp(0.5 * logvar) * teps)
        if likelihood == "bernoulli":
            recon = F.binary_cross_entropy_with_logits(out, tx, reduction="sum") / n
        else:
            recon = -torch.distributions.Normal(out, torch.exp(torch_log_sigma)).log_prob(tx).sum() / n
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / n
        loss = recon + beta * kl
        loss.backward()
        torch_opt.step()
        for key, theirs in (("loss", loss), ("recon", recon), ("kl", kl)):
            assert stats[key] == pytest.approx(theirs.item(), rel=1e-10), (step, key)

    for which, model, torch_model in (("E", E, torch_E), ("D", D, torch_D)):
        for (name, ours, _), theirs in zip(model.named_parameters(), torch_model.parameters(), strict=True):
            theirs = theirs.detach().numpy().T
            error = np.max(np.abs(be.to_numpy(ours) - theirs)) / np.max(np.abs(theirs))
            assert error <= 1e-9, f"{which}.{name}: relative error {error:.2e}"
    if likelihood == "gaussian_learned":
        assert float(vae.models["log_sigma"].params[0]) == pytest.approx(torch_log_sigma.item(), rel=1e-9)
        assert torch_log_sigma.item() != log_sigma


# ---------------------------------------------------------------- 3. KL and log-likelihood estimates


def test_closed_form_kl_matches_monte_carlo(backend_name):
    """The `kl` a step reports is E_q[log q(z|x) - log p(z)] to within 4 standard errors."""
    vae = tiny_vae(backend_name, seed=4)
    be = vae.backend
    vae.encoder.layers[-1].b[...] = be.asarray([0.3, -0.8, 0.9, -1.2])  # mu and logvar far from 0
    x = data("bernoulli", (4, 4), seed=3)
    mu, logvar = (be.to_numpy(part) for part in vae.encode(x))
    kl = vae.train_step(x)["kl"]
    eps = np.random.default_rng(0).standard_normal((20000, *mu.shape))  # (M, N, L)
    z = mu + np.exp(logvar / 2) * eps
    log_q = np.sum(-0.5 * eps ** 2 - 0.5 * logvar - 0.5 * LOG_2PI, axis=2)  # (M, N)
    log_p = np.sum(-0.5 * z ** 2 - 0.5 * LOG_2PI, axis=2)
    draws = np.mean(log_q - log_p, axis=1)  # the batch mean, one value per draw
    standard_error = draws.std(ddof=1) / math.sqrt(draws.size)
    assert abs(draws.mean() - kl) < 4 * standard_error, (draws.mean(), kl, standard_error)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_one_importance_sample_is_the_monte_carlo_elbo(backend_name, likelihood):
    """log_likelihood(x, k=1) is log p(x|z) + log p(z) - log q(z|x) at the draw z the seeded
    backend makes (over several decoder passes), and elbo(x, eps) is log p(x|z) - KL, with
    no beta (here 0.5) in either."""
    vae = tiny_vae(backend_name, likelihood, beta=0.5, seed=5)
    be = vae.backend
    x = data(likelihood, (5, 4), seed=4)
    state = be.rng_state()
    estimate = vae.log_likelihood(x, k=1, batch_size=2)
    be.set_rng_state(state)
    eps = be.to_numpy(be.standard_normal((5, vae.latent_dim)))  # the same numbers in the same order
    mu, logvar = (be.to_numpy(part) for part in vae.encode(x))
    z = mu + np.exp(logvar / 2) * eps
    log_px = log_p_x(likelihood, x, outputs(vae.decoder, z), 0.3)
    log_pz = np.sum(-0.5 * z ** 2 - 0.5 * LOG_2PI, axis=1)
    log_qz = np.sum(-0.5 * ((z - mu) / np.exp(logvar / 2)) ** 2 - 0.5 * logvar - 0.5 * LOG_2PI, axis=1)
    assert isinstance(estimate, np.ndarray) and estimate.dtype == np.float64
    np.testing.assert_allclose(estimate, log_px + log_pz - log_qz, rtol=1e-10)
    kl = -0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar), axis=1)
    np.testing.assert_allclose(vae.elbo(x, eps), log_px - kl, rtol=1e-10)


def iwae_rises_with_k(vae, x):
    """True when the bound's batch mean rises from k = 1 to 10 to 100 by more than 3 standard
    errors of the paired per-example differences (one fixed seed)."""
    estimates = [vae.log_likelihood(x, k=k) for k in (1, 10, 100)]
    for low, high in zip(estimates, estimates[1:]):
        gain = high - low
        if not gain.mean() > 3 * gain.std(ddof=1) / math.sqrt(gain.size):
            return False
    return True


def test_importance_weighted_bound_rises_with_k(backend_name, monkeypatch):
    """The IWAE estimate rises with k; the arithmetic mean of the log weights (the ELBO,
    whatever k) in place of log-mean-exp does not, so the check tells them apart."""
    vae = tiny_vae(backend_name, seed=6)
    x = (data("bernoulli", (1000, 4), seed=5) < 0.5).astype(float)
    assert iwae_rises_with_k(vae, x)
    monkeypatch.setattr(vae_module, "log_mean_exp", lambda log_weights: np.mean(log_weights, axis=1))
    assert not iwae_rises_with_k(vae, x)


@settings(max_examples=50)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=6),
                  elements=st.floats(-800, 800)), st.floats(-1e4, 1e4))
def test_log_mean_exp_is_stable_and_exact(log_weights, shift):
    """log_mean_exp is log(mean(exp(w))) per row, finite for weights whose exp under- or
    overflows, and shifts with its input."""
    expected = np.logaddexp.reduce(log_weights, axis=1) - math.log(log_weights.shape[1])
    np.testing.assert_allclose(log_mean_exp(log_weights), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_mean_exp(log_weights + shift), expected + shift, rtol=1e-12, atol=1e-9)


# ---------------------------------------------------------------- 4. shapes, modes, checkpoints, learning


@pytest.mark.parametrize("backend_name", BACKENDS)
@settings(max_examples=20)
@given(st.sampled_from(LIKELIHOODS), st.integers(1, 7),
       st.sampled_from([(4,), (2, 3, 1)]))
def test_shapes_and_dtypes(backend_name, likelihood, n, shape):
    """encode, reconstruct, sample, elbo and log_likelihood give the documented shapes and
    dtypes on a float32 backend; Bernoulli means are probabilities."""
    vae = tiny_vae(backend_name, likelihood, shape=shape, dtype="float32", recording=False)
    be = vae.backend
    x = data(likelihood, (n, *shape))
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (n, 2) and mu.dtype == np.float32
    for means in (vae.reconstruct(x), vae.sample(n), vae.sample(n, np.zeros((n, 2)))):
        assert means.shape == (n, *shape) and means.dtype == np.float32
        if likelihood == "bernoulli":
            assert 0 <= float(means.min()) and float(means.max()) <= 1
    for values in (vae.elbo(x), vae.log_likelihood(x, k=3, batch_size=2)):
        assert type(values) is np.ndarray and values.shape == (n,) and values.dtype == np.float64
        assert np.all(np.isfinite(values))
    if likelihood == "bernoulli":  # log p(x|z) <= 0 and KL >= 0
        assert np.all(vae.elbo(x) <= 0)
    assert set(vae.train_step(be.asarray(x))) == set(vae.stat_names) == {"loss", "recon", "kl"}


def test_evaluation_mode_is_used_and_restored(backend_name):
    """With BatchNorm in both networks, sample/reconstruct/encode/elbo use the running
    statistics (results do not depend on the rest of the batch) and restore each mode."""
    be = mg.get_backend(backend_name, "float64", seed=0)
    E = mg.Sequential([mg.Dense(4, 6), mg.BatchNorm(6), mg.Tanh(), mg.Dense(6, 4)], backend=be)
    D = mg.Sequential([mg.Dense(2, 6), mg.BatchNorm(6), mg.Tanh(), mg.Dense(6, 4)], backend=be)
    vae = VAE(E, D)
    x = data("bernoulli", (6, 4))
    vae.train_step(x)  # running statistics move away from their initial values
    z = np.random.default_rng(1).standard_normal((4, 2))
    for mode in (True, False):
        vae.train(mode)
        np.testing.assert_allclose(be.to_numpy(vae.sample(4, z))[:2], be.to_numpy(vae.sample(2, z[:2])), rtol=1e-12)
        np.testing.assert_allclose(be.to_numpy(vae.reconstruct(x))[:2], be.to_numpy(vae.reconstruct(x[:2])), rtol=1e-12)
        np.testing.assert_allclose(be.to_numpy(vae.encode(x)[0])[:2], be.to_numpy(vae.encode(x[:2])[0]), rtol=1e-12)
        eps = np.zeros((6, 2))
        np.testing.assert_allclose(vae.elbo(x, eps)[:2], vae.elbo(x[:2], eps[:2]), rtol=1e-12)
        assert E.training is mode and D.training is mode


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_checkpoint_round_trip_resumes_bit_exactly(backend_name, likelihood, tmp_path):
    """save / load_checkpoint restores parameters, optimizer state, step count, config and
    the random stream: the next steps (drawing their own eps) are bit-identical."""
    be = mg.get_backend(backend_name, "float32", seed=2)
    E, D = networks(be)
    vae = VAE(E, D, likelihood=likelihood, beta=0.7, log_sigma=-0.2,
              encoder_opt=mg.Adam(E, 3e-3, (0.5, 0.9)), decoder_opt=mg.RMSProp(D, 1e-3))
    batches = [data(likelihood, (8, 4), seed=seed) for seed in range(5)]
    for x in batches[:2]:
        vae.train_step(x)
    vae.save(tmp_path / "vae.npz")
    loaded, _ = load_checkpoint(tmp_path / "vae.npz")
    assert type(loaded) is mg.VAE is VAE and loaded.steps == 2 and loaded.config() == vae.config()
    assert set(loaded.models) == set(vae.models) and set(loaded.optimizers) == set(vae.optimizers)
    for x in batches[2:]:
        assert vae.train_step(x) == loaded.train_step(x)
    for name, state in vae.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], state, err_msg=name)
    assert VAE.load(tmp_path / "vae.npz").steps == 2


def test_given_eps_makes_the_step_deterministic(backend_name):
    """Two equal VAEs given one eps take the same step whatever their random streams."""
    first, second = tiny_vae(backend_name, seed=1), tiny_vae(backend_name, seed=1)
    second.backend.standard_normal((3, 3))  # advance one stream only
    x, eps = data("bernoulli", (5, 4)), np.random.default_rng(0).standard_normal((5, 2))
    assert first.train_step(x, eps) == second.train_step(x, eps)
    np.testing.assert_array_equal(first.backend.to_numpy(first.encoder.params),
                                  second.backend.to_numpy(second.encoder.params))


def test_short_training_run_lowers_the_loss(backend32):
    """400 float32 Adam steps on four noisy 16-pixel binary patterns cut the mean negative
    ELBO to under half its initial value (about 16 nats untrained, 5 after)."""
    rng = np.random.default_rng(0)
    prototypes = rng.random((4, 16)) < 0.5
    flips = rng.random((512, 16)) < 0.05
    images = (prototypes[rng.integers(0, 4, 512)] ^ flips).astype(np.float32)
    E = mg.Sequential([mg.Dense(16, 32), mg.ReLU(), mg.Dense(32, 4)], backend=backend32)
    D = mg.Sequential([mg.Dense(2, 32), mg.ReLU(), mg.Dense(32, 16)], backend=backend32)
    vae = VAE(E, D, encoder_opt=mg.Adam(E, 1e-2), decoder_opt=mg.Adam(D, 1e-2))
    eps = rng.standard_normal((512, 2))
    before = -vae.elbo(images, eps).mean()
    for step in range(400):
        vae.train_step(images[rng.integers(0, 512, 32)])
    after = -vae.elbo(images, eps).mean()
    assert before > 9 and after < 0.5 * before, (before, after)


def test_overflowing_logvar_is_not_clamped(backend_name):
    """A logvar whose exp overflows makes the KL and the loss infinite, not a clamped number."""
    vae = tiny_vae(backend_name)
    vae.encoder.layers[-1].b[2:] = 1e4
    with np.errstate(over="ignore", invalid="ignore"):
        stats = vae.train_step(data("bernoulli", (3, 4)))
    assert not math.isfinite(stats["kl"]) and not math.isfinite(stats["loss"])


# ---------------------------------------------------------------- 5. refused inputs


def dense(be, *widths):
    return mg.Sequential([mg.Dense(a, b) for a, b in zip(widths, widths[1:])], backend=be)


@pytest.mark.parametrize("make, words", [
    (lambda E, D, be: VAE(E, D, likelihood="poisson"), "likelihood must be one of"),
    (lambda E, D, be: VAE(E, D, beta=0), "beta must be a positive number, got 0"),
    (lambda E, D, be: VAE(E, D, beta=-1.0), "beta must be a positive number"),
    (lambda E, D, be: VAE(E, D, beta=float("nan")), "beta must be a positive number"),
    (lambda E, D, be: VAE(E, D, beta=float("inf")), "beta must be a positive number"),
    (lambda E, D, be: VAE(E, D, log_sigma=float("nan")), "log_sigma must be a finite number"),
    (lambda E, D, be: VAE(dense(be, 4, 3), D), r"encoder must output \(2 \* latent_dim,\).* not \(3,\)"),
    (lambda E, D, be: VAE(mg.Sequential([mg.Dense(4, 4), mg.Reshape((2, 2))], backend=be), D),
     r"encoder must output \(2 \* latent_dim,\).* not \(2, 2\)"),
    (lambda E, D, be: VAE(E, dense(be, 3, 4)), r"the decoder must read \(2,\), not \(3,\)"),
    (lambda E, D, be: VAE(E, dense(be, 2, 5)), r"the decoder makes data of shape \(5,\), but the encoder reads \(4,\)"),
    (lambda E, D, be: VAE(E, D, encoder_opt=mg.SGD(D, 0.1)), "encoder_opt must optimise the encoder"),
    (lambda E, D, be: VAE(E, D, decoder_opt=mg.SGD(E, 0.1)), "decoder_opt must optimise the decoder"),
    (lambda E, D, be: VAE(E, dense(mg.get_backend(be.name, "float32"), 2, 4)), "share one array backend"),
])
def test_bad_vae_arguments(backend_name, make, words):
    """Each bad argument is refused with a message that names it."""
    be = mg.get_backend(backend_name, "float64", seed=0)
    E, D = networks(be)
    with pytest.raises(ValueError, match=words):
        make(E, D, be)


@pytest.mark.parametrize("call", [
    lambda vae, x: vae.train_step(x),
    lambda vae, x: vae.elbo(x),
    lambda vae, x: vae.log_likelihood(x, k=2),
])
@pytest.mark.parametrize("value, found", [(-0.5, r"\[-0.5, 0\.\d+\]"), (1.25, r"\[0\.\d+, 1.25\]"),
                                          (float("nan"), r"\[nan, nan\]")])
def test_bernoulli_data_outside_the_unit_interval_is_refused(backend_name, call, value, found):
    """Bernoulli data must lie in [0, 1]; the message gives the range found. Gaussian data need not."""
    x = data("bernoulli", (5, 4))
    x[1, 2] = value
    with pytest.raises(ValueError, match=r"bernoulli likelihood needs data in \[0, 1\], got values in " + found):
        call(tiny_vae(backend_name, "bernoulli"), x)
    if not math.isnan(value):
        call(tiny_vae(backend_name, "gaussian"), x)


def test_bad_batches_and_arguments_are_refused(backend_name):
    """Data of the wrong shape, empty batches, eps of the wrong shape, k or n below 1."""
    vae = tiny_vae(backend_name)
    x = data("bernoulli", (5, 4))
    with pytest.raises(ValueError, match=r"data batch must have shape \(N, 4\) with N >= 1, got \(5, 3\)"):
        vae.train_step(x[:, :3])
    with pytest.raises(ValueError, match=r"data batch must have shape \(N, 4\)"):
        vae.elbo(x[:0])
    with pytest.raises(ValueError, match=r"eps must have shape \(5, 2\), got \(5, 3\)"):
        vae.train_step(x, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        vae.log_likelihood(x, k=0)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        vae.sample(0)
    assert vae.steps == 0
