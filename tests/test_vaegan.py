"""The VAE/GAN: each player's gradient against central differences of its loss written out
in NumPy from forward passes only (float64), three steps against PyTorch, the order of the
noise draws, sampling modes, learning, checkpoints, and every refused input. Numeric tests
run on each available backend (`backend_name` / `BACKENDS`, tests/conftest.py)."""
import math

import numpy as np
import pytest

import minigan as mg
from minigan.gradcheck import compare, numerical_gradient
from minigan.vaegan import VAEGAN



class RecordingSGD(mg.SGD):
    """SGD that remembers the gradient it was given."""

    def step(self):
        self.seen_grads = self.grads.copy()
        super().step()


def mlp_networks(be, decoder_batch_norm=False):
    """Data (4,), latent 2: encoder 4-6-4, decoder 2-6-4 (Tanh output, optionally a
    BatchNorm), discriminator Dense-BatchNorm-LeakyReLU-Dense-Tanh-Dense."""
    E = mg.Sequential([mg.Dense(4, 6), mg.Tanh(), mg.Dense(6, 4)], backend=be)
    G = mg.Sequential([mg.Dense(2, 6)] + ([mg.BatchNorm(6)] if decoder_batch_norm else [])
                      + [mg.Tanh(), mg.Dense(6, 4), mg.Tanh()], backend=be)
    D = mg.Sequential([mg.Dense(4, 6), mg.BatchNorm(6), mg.LeakyReLU(0.2), mg.Dense(6, 5), mg.Tanh(),
                       mg.Dense(5, 1)], backend=be)
    return E, G, D


def conv_networks(be, decoder_batch_norm=False):
    """Images (4, 4, 1), latent 2; a conv discriminator Conv2d-BatchNorm-LeakyReLU-Flatten-Dense
    whose layer 2 gives image-shaped features (2, 2, 2)."""
    E = mg.Sequential([mg.Flatten(), mg.Dense(16, 6), mg.Tanh(), mg.Dense(6, 4)], backend=be,
                      input_shape=(4, 4, 1))
    G = mg.Sequential([mg.Dense(2, 6)] + ([mg.BatchNorm(6)] if decoder_batch_norm else [])
                      + [mg.Tanh(), mg.Dense(6, 16), mg.Tanh(), mg.Reshape((4, 4, 1))], backend=be)
    D = mg.Sequential([mg.Conv2d(1, 2, 3, stride=2, padding=1), mg.BatchNorm(2), mg.LeakyReLU(0.2),
                       mg.Flatten(), mg.Dense(8, 1)], backend=be, input_shape=(4, 4, 1))
    return E, G, D


def tiny_vaegan(backend_name, make=mlp_networks, feature_layer=2, gamma=0.7, beta=1.3, seed=0,
                dtype="float64", recording=True, **options):
    be = mg.get_backend(backend_name, dtype, seed=seed)
    E, G, D = make(be, **options)
    for model in (E, G, D):  # weights large enough that every layer matters
        model.params[...] = be.asarray(np.random.default_rng(seed + 10).normal(0, 0.6, model.params.shape))
    optimizers = ({"encoder_opt": RecordingSGD(E, 0.05), "decoder_opt": RecordingSGD(G, 0.05),
                   "discriminator_opt": RecordingSGD(D, 0.05)} if recording else {})
    return VAEGAN(E, G, D, feature_layer, gamma=gamma, beta=beta, **optimizers)


def data(shape, seed=0):
    """Host float64 data in (-1, 1), the decoder's Tanh range."""
    return np.tanh(np.random.default_rng(seed).normal(0, 1.5, shape))


def outputs(model, x, until=None):
    """model(x) (or layer `until`'s output) as a host NumPy array."""
    return model.backend.to_numpy(model.forward(model.backend.asarray(x), until=until))


def numpy_losses(vg, x, eps, z_p):
    """The four losses of the step, written out in NumPy from forward passes of the networks:
    {"prior", "llike", "d_loss", "dec_gan"}."""
    E, G, D, l = vg.encoder, vg.decoder, vg.discriminator, vg.feature_layer
    n = x.shape[0]
    h = outputs(E, x)
    mu, logvar = h[:, :2], h[:, 2:]
    x_tilde = outputs(G, mu + np.exp(logvar / 2) * eps)
    x_prior = outputs(G, z_p)

    def features(batch):
        return outputs(D, batch, until=l).reshape(n, -1)

    def bce(logits, target):  # -t log s(x) - (1 - t) log(1 - s(x)), a mean
        p = 1 / (1 + np.exp(-logits))
        return np.mean(-target * np.log(p) - (1 - target) * np.log(1 - p))

    real, tilde, prior = outputs(D, x), outputs(D, x_tilde), outputs(D, x_prior)
    return {"prior": np.mean(-0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar), axis=1)),
            "llike": np.mean(0.5 * np.sum((features(x_tilde) - features(x)) ** 2, axis=1)),
            "d_loss": bce(real, 1) + bce(tilde, 0) + bce(prior, 0),
            "dec_gan": bce(tilde, 1) + bce(prior, 1)}


# ---------------------------------------------------------------- 1. gradients


@pytest.mark.parametrize("make, shape, feature_layer", [
    (mlp_networks, (4,), 2), (mlp_networks, (4,), -3), (mlp_networks, (4,), 1), (conv_networks, (4, 4, 1), 2)])
@pytest.mark.parametrize("decoder_batch_norm", [False, True])
def test_each_player_gets_the_gradient_of_its_own_loss(backend_name, make, shape, feature_layer,
                                                       decoder_batch_norm):
    """The gradient each optimizer receives is the central difference, at the pre-step
    parameters, of that player's loss written out in NumPy: encoder beta L_prior + L_llike,
    decoder gamma L_llike + L_dec_gan, discriminator L_D (D with BatchNorm, features from a
    middle layer; the decoder with and without BatchNorm, i.e. two passes)."""
    vg = tiny_vaegan(backend_name, make, feature_layer, decoder_batch_norm=decoder_batch_norm, seed=3)
    x = data((6, *shape), seed=1)
    rng = np.random.default_rng(2)
    eps, z_p = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    before = {name: model.params.copy() for name, model in vg.models.items()}
    stats = vg.train_step(x, eps, z_p)
    for name, model in vg.models.items():
        model.params[...] = before[name]
    losses = numpy_losses(vg, x, eps, z_p)
    for key, value in losses.items():
        assert stats[key] == pytest.approx(value, rel=1e-12), key
    player_losses = {
        "encoder": lambda terms: vg.beta * terms["prior"] + terms["llike"],
        "decoder": lambda terms: vg.gamma * terms["llike"] + terms["dec_gan"],
        "discriminator": lambda terms: terms["d_loss"],
    }
    for name, loss in player_losses.items():
        model, optimizer = vg.models[name], vg.optimizers[f"{name}_opt"]
        numeric = numerical_gradient(lambda: loss(numpy_losses(vg, x, eps, z_p)), model.params)
        report = compare(name, optimizer.seen_grads, numeric)
        assert report.passed(), report
        assert np.abs(numeric).max() > 1e-3, name  # every player's loss depends on its parameters


# ---------------------------------------------------------------- 2. against PyTorch


def torch_twin(model, torch_model, torch):
    """Copies `model`'s parameters (Dense W as weight.T, BatchNorm gamma/beta) into `torch_model`."""
    with torch.no_grad():
        for (_, value, _), param in zip(model.named_parameters(), torch_model.parameters(), strict=True):
            param.copy_(torch.from_numpy(model.backend.to_numpy(value).T.copy()))


@pytest.mark.parametrize("optimizers", ["default", "sgd"])
def test_three_steps_match_pytorch_float64(backend_name, optimizers):
    """Three steps of MLP networks with BatchNorm in the decoder and the discriminator (features
    from layer 2), the same eps and z_p, give PyTorch's statistics (1e-10) and parameters and
    running statistics (1e-9 relative), with the default RMSProp(3e-4) optimizers and with SGD
    (whose update follows the gradients' size as well as their sign). Torch takes each
    player's gradient with torch.autograd.grad of its loss w.r.t. its own parameters."""
    torch = pytest.importorskip("torch", reason="PyTorch is the independent oracle (pip install torch)")
    nn, F = torch.nn, torch.nn.functional
    n, gamma, beta = 6, 0.7, 1.3
    be = mg.get_backend(backend_name, "float64", seed=0)
    E = mg.Sequential([mg.Dense(6, 8), mg.ReLU(), mg.Dense(8, 4)], backend=be)
    G = mg.Sequential([mg.Dense(2, 8), mg.BatchNorm(8), mg.ReLU(), mg.Dense(8, 6), mg.Tanh()], backend=be)
    D = mg.Sequential([mg.Dense(6, 8), mg.BatchNorm(8), mg.LeakyReLU(0.2), mg.Dense(8, 1)], backend=be)
    for model in (E, G, D):
        model.params[...] += be.asarray(np.random.default_rng(1).normal(0, 0.1, model.params.shape))
    ours = {} if optimizers == "default" else {f"{name}_opt": mg.SGD(model, 0.1) for name, model in
                                               (("encoder", E), ("decoder", G), ("discriminator", D))}
    vg = VAEGAN(E, G, D, feature_layer=2, gamma=gamma, beta=beta, **ours)
    torch_E = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4)).double()
    torch_G = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 6), nn.Tanh()).double()
    torch_D = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.LeakyReLU(0.2), nn.Linear(8, 1)).double()
    pairs = ((E, torch_E), (G, torch_G), (D, torch_D))
    for model, torch_model in pairs:
        torch_twin(model, torch_model, torch)

    def make_optimizer(params):
        if optimizers == "default":
            return torch.optim.RMSprop(params, lr=3e-4, alpha=0.99, eps=1e-8)
        return torch.optim.SGD(params, lr=0.1)

    torch_opts = [make_optimizer(torch_model.parameters()) for _, torch_model in pairs]

    def bce(logits, target):
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))

    rng = np.random.default_rng(7)
    for step in range(3):
        x, eps, z_p = np.tanh(rng.normal(0, 1.5, (n, 6))), rng.standard_normal((n, 2)), rng.standard_normal((n, 2))
        stats = vg.train_step(be.asarray(x), be.asarray(eps), be.asarray(z_p))

        tx, teps, tz = torch.from_numpy(x), torch.from_numpy(eps), torch.from_numpy(z_p)
        h = torch_E(tx)
        mu, logvar = h[:, :2], h[:, 2:]
        x_tilde = torch_G(mu + torch.exp(0.5 * logvar) * teps)
        features_real = torch_D[:3](tx)                          # pass 1: X
        logits_real = torch_D[3:](features_real)
        features_tilde = torch_D[:3](x_tilde)                    # pass 2: X~
        logits_tilde = torch_D[3:](features_tilde)
        logits_prior = torch_D(torch_G(tz))                      # pass 3: X_p
        prior = torch.mean(-0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1))
        llike = 0.5 * torch.sum((features_tilde - features_real.detach()) ** 2) / n
        d_loss = bce(logits_real, 1.0) + bce(logits_tilde, 0.0) + bce(logits_prior, 0.0)
        dec_gan = bce(logits_tilde, 1.0) + bce(logits_prior, 1.0)
        player_losses = (beta * prior + llike, gamma * llike + dec_gan, d_loss)
        all_grads = [torch.autograd.grad(loss, list(torch_model.parameters()), retain_graph=True)
                     for loss, (_, torch_model) in zip(player_losses, pairs)]
        for grads, (_, torch_model), optimizer in zip(all_grads, pairs, torch_opts):
            for param, grad in zip(torch_model.parameters(), grads):
                param.grad = grad
            optimizer.step()
        expected = {"prior": prior, "llike": llike, "d_loss": d_loss, "dec_gan": dec_gan,
                    "d_real": torch.sigmoid(logits_real).mean(), "d_recon": torch.sigmoid(logits_tilde).mean(),
                    "d_fake": torch.sigmoid(logits_prior).mean()}
        assert set(stats) == set(vg.stat_names) == set(expected)
        for key, theirs in expected.items():
            assert stats[key] == pytest.approx(theirs.item(), rel=1e-10), (step, key)

    for which, (model, torch_model) in zip(("E", "G", "D"), pairs):
        for (name, value, _), theirs in zip(model.named_parameters(), torch_model.parameters(), strict=True):
            theirs = theirs.detach().numpy().T
            error = np.max(np.abs(be.to_numpy(value) - theirs)) / np.max(np.abs(theirs))
            assert error <= 1e-9, f"{which}.{name}: relative error {error:.2e}"
    for ours_bn, torch_bn in ((G.layers[1], torch_G[1]), (D.layers[1], torch_D[1])):
        np.testing.assert_allclose(be.to_numpy(ours_bn.running_mean), torch_bn.running_mean.numpy(), rtol=1e-9)
        np.testing.assert_allclose(be.to_numpy(ours_bn.running_var), torch_bn.running_var.numpy(), rtol=1e-9)


# ---------------------------------------------------------------- 3. the step's conventions


def test_noise_is_drawn_eps_first_and_a_given_pair_makes_the_step_deterministic(backend_name):
    """Without eps and z the step draws eps (N, L) and then z_p (N, L) from the backend's
    generator; given both, two equal models take the same step whatever their streams."""
    first, second = tiny_vaegan(backend_name, seed=1), tiny_vaegan(backend_name, seed=1)
    x = data((5, 4))
    state = first.backend.rng_state()
    drawn = first.train_step(x)
    first.backend.set_rng_state(state)
    eps = first.backend.to_numpy(first.backend.standard_normal((5, 2)))
    z_p = first.backend.to_numpy(first.backend.standard_normal((5, 2)))
    second.backend.standard_normal((3, 3))  # advance the other stream only
    assert second.train_step(x, eps, z_p) == drawn
    for name in first.models:
        np.testing.assert_array_equal(first.backend.to_numpy(first.models[name].params),
                                      second.backend.to_numpy(second.models[name].params))


def test_sample_encode_and_reconstruct_use_evaluation_mode(backend_name):
    """sample and reconstruct decode in evaluation mode (no batch statistics: rows do not
    interact) and restore each network's mode; shapes follow the data."""
    vg = tiny_vaegan(backend_name, conv_networks, decoder_batch_norm=True)
    be = vg.backend
    z = np.random.default_rng(1).standard_normal((4, 2))
    first, second = be.to_numpy(vg.sample(4, z)), be.to_numpy(vg.sample(2, z[:2]))
    assert first.shape == (4, 4, 4, 1) and vg.sample(3).shape == (3, 4, 4, 1)
    np.testing.assert_allclose(first[:2], second, rtol=1e-12)
    x = data((3, 4, 4, 1))
    mu, logvar = vg.encode(x)
    assert mu.shape == logvar.shape == (3, 2)
    np.testing.assert_allclose(be.to_numpy(vg.reconstruct(x)), be.to_numpy(vg.sample(3, mu)), rtol=1e-12)
    assert all(model.training for model in vg.models.values())
    vg.eval()
    vg.sample(2)
    assert not any(model.training for model in vg.models.values())


def test_config_round_trip_and_defaults(backend_name):
    """The defaults are RMSProp(3e-4) for each player, gamma = beta = 1; from_config rebuilds
    the same architecture, weights and optimizer settings (with a normalised feature layer)."""
    be = mg.get_backend(backend_name, "float64", seed=0)
    vg = VAEGAN(*mlp_networks(be), feature_layer=-4)
    assert vg.feature_layer == 2 and vg.gamma == vg.beta == 1.0 and vg.latent_dim == 2
    assert vg.batches_per_step == 1 and set(vg.models) == {"encoder", "decoder", "discriminator"}
    for name, optimizer in vg.optimizers.items():
        assert optimizer.config() == {"type": "RMSProp", "lr": 3e-4, "alpha": 0.99, "eps": 1e-8}, name
    rebuilt = VAEGAN.from_config(vg.config(), be)
    assert rebuilt.config() == vg.config()


# ---------------------------------------------------------------- 4. learning and checkpoints


def test_short_training_run_lowers_the_autoencoding_loss(backend32):
    """300 float32 Adam steps on noisy copies of four 16-pixel patterns in [-1, 1] cut
    L_llike + L_prior, averaged over 20 steps, to under half its starting value (about 22
    to 3.6 here; 13-22 to 3.1-3.6 over other seeds), and the pixel-space reconstruction
    error to under half too (about 1.07 to 0.10)."""
    rng = np.random.default_rng(0)
    prototypes = np.where(rng.random((4, 16)) < 0.5, -0.8, 0.8)
    images = (prototypes[rng.integers(0, 4, 512)] + 0.05 * rng.standard_normal((512, 16))).astype(np.float32)
    be = backend32
    E = mg.Sequential([mg.Dense(16, 32), mg.ReLU(), mg.Dense(32, 4)], backend=be)
    G = mg.Sequential([mg.Dense(2, 32), mg.ReLU(), mg.Dense(32, 16), mg.Tanh()], backend=be)
    D = mg.Sequential([mg.Dense(16, 32), mg.LeakyReLU(0.2), mg.Dense(32, 16), mg.LeakyReLU(0.2),
                       mg.Dense(16, 1)], backend=be)
    vg = VAEGAN(E, G, D, feature_layer=1, encoder_opt=mg.Adam(E, 1e-3), decoder_opt=mg.Adam(G, 1e-3),
                discriminator_opt=mg.Adam(D, 1e-4))
    pixel_error_before = float(np.mean((be.to_numpy(vg.reconstruct(images)) - images) ** 2))
    losses = []
    for _ in range(300):
        stats = vg.train_step(images[rng.integers(0, 512, 32)])
        losses.append(stats["llike"] + stats["prior"])
    assert all(math.isfinite(value) for value in stats.values())
    before, after = np.mean(losses[:20]), np.mean(losses[-20:])
    pixel_error_after = float(np.mean((be.to_numpy(vg.reconstruct(images)) - images) ** 2))
    assert after < 0.5 * before, (before, after)
    assert pixel_error_after < 0.5 * pixel_error_before, (pixel_error_before, pixel_error_after)


def test_checkpoint_round_trip_continues_bit_identically(backend_name, tmp_path):
    """Saved after two steps (BatchNorm statistics, RMSProp state and the random stream
    included) and loaded, the model takes the next two steps exactly as the original does."""
    be = mg.get_backend(backend_name, "float64", seed=4)
    vg = VAEGAN(*conv_networks(be, decoder_batch_norm=True), feature_layer=2, gamma=0.5)
    x = data((5, 4, 4, 1), seed=2)
    for _ in range(2):
        vg.train_step(x)
    vg.save(tmp_path / "vaegan.npz")
    loaded = VAEGAN.load(tmp_path / "vaegan.npz")
    assert loaded.steps == 2 and loaded.config() == vg.config()
    for _ in range(2):
        assert loaded.train_step(x) == vg.train_step(x)
    state = vg.state_dict()
    assert "discriminator/1.running_var" in state and "decoder_opt/square_avg" in state
    for name, value in loaded.state_dict().items():
        np.testing.assert_array_equal(value, state[name], err_msg=name)


# ---------------------------------------------------------------- 5. refused inputs


def dense(be, *widths):
    return mg.Sequential([mg.Dense(a, b) for a, b in zip(widths, widths[1:])], backend=be)


@pytest.mark.parametrize("make, words", [
    (lambda E, G, D, be: VAEGAN(dense(be, 4, 3), G, D, 2),
     r"encoder must output \(2 \* latent_dim,\).* not \(3,\)"),
    (lambda E, G, D, be: VAEGAN(mg.Sequential([mg.Dense(4, 4), mg.Reshape((2, 2))], backend=be), G, D, 2),
     r"encoder must output \(2 \* latent_dim,\).* not \(2, 2\)"),
    (lambda E, G, D, be: VAEGAN(E, dense(be, 3, 4), D, 2), r"the decoder must read \(2,\), not \(3,\)"),
    (lambda E, G, D, be: VAEGAN(E, G, dense(be, 5, 1), 0),
     r"decoder makes data of shape \(4,\), but the discriminator reads \(5,\)"),
    (lambda E, G, D, be: VAEGAN(dense(be, 5, 4), G, D, 2),
     r"decoder makes data of shape \(4,\), but the encoder reads \(5,\)"),
    (lambda E, G, D, be: VAEGAN(E, G, dense(be, 4, 3, 2), 0),
     r"discriminator must output one logit per input, not \(2,\)"),
    (lambda E, G, D, be: VAEGAN(E, G, D, 6), r"feature_layer: a layer index must be an int in \[-6, 5\].* got 6"),
    (lambda E, G, D, be: VAEGAN(E, G, D, -7), r"feature_layer: a layer index must be an int in \[-6, 5\]"),
    (lambda E, G, D, be: VAEGAN(E, G, D, 2.0), r"feature_layer: a layer index must be an int"),
    (lambda E, G, D, be: VAEGAN(E, G, D, 5),
     r"feature_layer must be a hidden layer of the discriminator, not its last"),
    (lambda E, G, D, be: VAEGAN(E, G, D, -1), r"not its last \(layer 5, the logit\)"),
    (lambda E, G, D, be: VAEGAN(E, G, D, 2, gamma=0), "gamma must be a positive number, got 0"),
    (lambda E, G, D, be: VAEGAN(E, G, D, 2, gamma=-1.0), "gamma must be a positive number"),
    (lambda E, G, D, be: VAEGAN(E, G, D, 2, gamma=float("nan")), "gamma must be a positive number"),
    (lambda E, G, D, be: VAEGAN(E, G, D, 2, beta=0.0), "beta must be a positive number, got 0.0"),
    (lambda E, G, D, be: VAEGAN(E, G, D, 2, beta=float("inf")), "beta must be a positive number"),
    (lambda E, G, D, be: VAEGAN(E, G, D, 2, beta=True), "beta must be a positive number, got True"),
    (lambda E, G, D, be: VAEGAN(E, G, D, 2, encoder_opt=mg.SGD(G, 0.1)), "encoder_opt must optimise the encoder"),
    (lambda E, G, D, be: VAEGAN(E, G, D, 2, discriminator_opt=mg.SGD(E, 0.1)),
     "discriminator_opt must optimise the discriminator"),
    (lambda E, G, D, be: VAEGAN(E, G, mlp_networks(mg.get_backend(be.name, "float32"))[2], 2),
     "share one array backend"),
])
def test_bad_vaegan_arguments(backend_name, make, words):
    """Each bad argument is refused with a message that names it."""
    be = mg.get_backend(backend_name, "float64", seed=0)
    with pytest.raises(ValueError, match=words):
        make(*mlp_networks(be), be)


def test_bad_batches_and_noise_are_refused(backend_name):
    """Data of the wrong shape, empty batches, eps or z of the wrong shape, n below 1; a
    refused step changes nothing."""
    vg = tiny_vaegan(backend_name)
    x = data((5, 4))
    with pytest.raises(ValueError, match=r"data batch must have shape \(N, 4\) with N >= 1, got \(5, 3\)"):
        vg.train_step(x[:, :3])
    with pytest.raises(ValueError, match=r"data batch must have shape \(N, 4\)"):
        vg.reconstruct(x[:0])
    with pytest.raises(ValueError, match=r"eps must have shape \(5, 2\), got \(5, 3\)"):
        vg.train_step(x, np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"z must have shape \(5, 2\), got \(4, 2\)"):
        vg.train_step(x, np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"z must have shape \(3, 2\), got \(3, 1\)"):
        vg.sample(3, np.zeros((3, 1)))
    with pytest.raises(ValueError, match="n must be a positive integer"):
        vg.sample(0)
    assert vg.steps == 0


def test_vaegan_is_exported():
    assert mg.VAEGAN is VAEGAN and "VAEGAN" in mg.__all__
