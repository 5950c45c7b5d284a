"""DCGAN: the convolutional generator and discriminator the DCGAN presets build, whole
training steps against PyTorch in float64 (Adam, BatchNorm in both networks, D in two
passes), WGAN-GP refusing a BatchNorm critic, packing along channels, and a DCGAN run that
resumes bit-exactly (BatchNorm's running statistics included)."""
import numpy as np
import pytest

import minigan as mg
from minigan.gan import GAN
from minigan.run.architectures import dcgan_discriminator, dcgan_generator
from minigan.run.config import RunConfig
from minigan.run.loop import train

from conftest import BACKENDS, assert_same_checkpoint_arrays

IMAGE = (8, 8, 1)


def small_dcgan(backend, loss="non_saturating", pack=1, lr=1e-2, mlp_head=()):
    G = dcgan_generator(5, (6, 4), IMAGE, "tanh", "normal", backend)
    D = dcgan_discriminator((8, 8, pack), (4, 6), "normal", backend, batch_norm=loss != "wgan-gp",
                            mlp_head=mlp_head)
    for model in (G, D):  # weights large enough that every layer matters
        model.params[...] = backend.asarray(np.random.default_rng(7).normal(0, 0.3, model.params.shape))
    return GAN(G, D, loss=loss, pack=pack, d_steps=1, d_opt=mg.Adam(D, lr, (0.5, 0.999)),
               g_opt=mg.Adam(G, lr, (0.5, 0.999)))


def test_the_architecture_is_the_papers():
    be = mg.get_backend("numpy", "float32", seed=0)
    G = dcgan_generator(100, (128, 64), (28, 28, 1), "tanh", "normal", be)
    D = dcgan_discriminator((28, 28, 1), (64, 128), "normal", be)
    assert [type(layer).__name__ for layer in G.layers] == [
        "Dense", "Reshape", "BatchNorm", "ReLU", "ConvTranspose2d", "BatchNorm", "ReLU", "ConvTranspose2d", "Tanh"]
    assert G.shapes[1:] == [(6272,), (7, 7, 128), (7, 7, 128), (7, 7, 128), (14, 14, 64), (14, 14, 64),
                            (14, 14, 64), (28, 28, 1), (28, 28, 1)]
    assert [type(layer).__name__ for layer in D.layers] == [
        "Conv2d", "LeakyReLU", "Conv2d", "BatchNorm", "LeakyReLU", "Flatten", "Dense"]
    assert D.shapes[-2:] == [(6272,), (1,)] and not D.rows_independent
    assert float(np.std(G.layers[4].W)) == pytest.approx(0.02, rel=0.05)
    assert float(np.mean(G.layers[2].gamma)) == pytest.approx(1.0, abs=0.01)
    with pytest.raises(ValueError, match="image sides divisible by 4, got 30x30"):
        dcgan_generator(100, (128, 64), (30, 30, 1), "tanh", "normal", be)


def test_a_preset_may_drop_batchnorm_from_the_discriminator():
    from minigan.run.presets import PRESETS, build_gan
    be = mg.get_backend("numpy", "float32", seed=0)
    with_bn = build_gan(PRESETS["dcgan-paper"], (28, 28, 1), be).discriminator
    without = build_gan(PRESETS["dcgan-paper"].with_overrides(discriminator_batch_norm=False), (28, 28, 1), be).discriminator
    assert [type(layer).__name__ for layer in without.layers] == [
        "Conv2d", "LeakyReLU", "Conv2d", "LeakyReLU", "Flatten", "Dense"]
    assert without.rows_independent and not with_bn.rows_independent  # one pass over [real; fake]
    assert without.num_params == with_bn.num_params - 2 * 128


def test_the_dcgan_preset_widens_the_generator_and_deepens_the_two_headed_discriminator():
    from minigan.run.presets import PRESETS, build_gan
    be = mg.get_backend("numpy", "float32", seed=0)
    assert PRESETS["dcgan-best"] is PRESETS["dcgan"]  # the final recipe's first name still runs it
    best, head = (build_gan(PRESETS[name], (28, 28, 1), be) for name in ("dcgan", "dcgan-mlp-head"))
    assert best.generator.shapes[5:8] == [(14, 14, 128)] * 3  # ConvT 128->128, BatchNorm, ReLU
    assert head.generator.shapes[5:8] == [(14, 14, 64)] * 3
    assert best.generator.num_params - head.generator.num_params == 16 * 128 * 64 + 64 + 2 * 64 + 16 * 64
    (convolutional, perceptron), (_, head_perceptron) = (d.discriminator.layers[0].branches for d in (best, head))
    assert [layer.W.shape for layer in convolutional if type(layer).__name__ == "Conv2d"] == [
        (4, 4, 1, 64), (4, 4, 64, 128), (4, 4, 128, 256)]
    assert [type(layer).__name__ for layer in convolutional[5:]] == [
        "Conv2d", "BatchNorm", "LeakyReLU", "Flatten", "Dense"]
    assert convolutional[-1].W.shape == (3 * 3 * 256, 1)  # 28 -> 14 -> 7 -> 3
    assert [layer.W.shape for layer in perceptron if hasattr(layer, "W")] == [
        layer.W.shape for layer in head_perceptron if hasattr(layer, "W")]  # the MLP head unchanged
    third = 16 * 128 * 256 + 256 + 2 * 256
    assert best.discriminator.num_params - head.discriminator.num_params == third - (7 * 7 * 128 - 3 * 3 * 256)
    assert best.discriminator.output_shape == (2,)
    assert best.d_opt.lr == head.d_opt.lr == 1e-3 and PRESETS["dcgan"].steps == 6000
    assert best.ema_decay == 0.999 and head.ema_decay == 0.0  # samples come from G's weight average
    assert best.models["generator_ema"].config() == best.generator.config()
    wide_g = PRESETS["dcgan-wide-g"]  # the earlier best: the same but for D's third convolution and the steps
    assert PRESETS["dcgan"].with_overrides(discriminator_hidden=(64, 128), steps=10000) == wide_g
    paper = PRESETS["dcgan-paper"]  # the paper's networks, which dcgan-mlp-head adds its MLP head to
    assert PRESETS["dcgan-mlp-head"] == paper.with_overrides(discriminator_mlp_head=(512, 256), steps=20000)
    assert (paper.generator_hidden, paper.discriminator_hidden, paper.discriminator_mlp_head, paper.ema_decay,
            paper.lr, paper.batch_size, paper.steps) == ((128, 64), (64, 128), (), 0.0, 1e-3, 64, 25000)


class TorchDCGAN:
    """The same networks in PyTorch (NCHW inside, NHWC at the boundaries), weights copied."""

    def __init__(self, torch, gan, lr):
        self.torch, nn = torch, torch.nn
        self.G = nn.ModuleList([self.module(layer) for layer in gan.generator.layers])
        self.D = nn.ModuleList([self.module(layer) for layer in gan.discriminator.layers])
        self.g_layers, self.d_layers = gan.generator.layers, gan.discriminator.layers
        self.g_opt = torch.optim.Adam(self.G.parameters(), lr=lr, betas=(0.5, 0.999), eps=1e-8)
        self.d_opt = torch.optim.Adam(self.D.parameters(), lr=lr, betas=(0.5, 0.999), eps=1e-8)

    def module(self, layer):
        torch, nn = self.torch, self.torch.nn
        kind = type(layer).__name__
        if kind in ("Conv2d", "ConvTranspose2d"):
            cls = nn.Conv2d if kind == "Conv2d" else nn.ConvTranspose2d
            extra = {} if kind == "Conv2d" else {"output_padding": tuple(layer.output_padding)}
            module = cls(layer.in_channels, layer.out_channels, tuple(layer.kernel_size), tuple(layer.stride),
                         tuple(layer.padding), **extra).double()
            order = (3, 2, 0, 1) if kind == "Conv2d" else (2, 3, 0, 1)
            weights = [np.ascontiguousarray(layer.W.transpose(order)), layer.b]
        elif kind == "Dense":
            module = nn.Linear(layer.in_features, layer.out_features).double()
            weights = [np.ascontiguousarray(layer.W.T), layer.b]
        elif kind == "BatchNorm":
            module = nn.BatchNorm2d(layer.num_features, momentum=layer.momentum, eps=layer.eps).double()
            weights = [layer.gamma, layer.beta]
        elif kind == "Branches":  # its branches' modules, branch by branch
            return nn.ModuleList([nn.ModuleList([self.module(inner) for inner in branch])
                                  for branch in layer.branches])
        else:
            return nn.Identity()
        with torch.no_grad():
            for parameter, value in zip(module.parameters(), weights):
                parameter.copy_(torch.tensor(np.array(value)))
        return module

    def run(self, modules, layers, x):
        """x is NHWC (or (N, F)); convolutions and BatchNorm run on NCHW views."""
        F = self.torch.nn.functional
        for module, layer in zip(modules, layers):
            kind = type(layer).__name__
            if kind in ("Conv2d", "ConvTranspose2d", "BatchNorm"):
                x = module(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            elif kind == "Dense":
                x = module(x)
            elif kind in ("Reshape", "Flatten"):
                x = x.reshape(x.shape[0], *layer.config().get("shape", [-1]))
            elif kind == "ReLU":
                x = F.relu(x)
            elif kind == "LeakyReLU":
                x = F.leaky_relu(x, layer.slope)
            elif kind == "Tanh":
                x = self.torch.tanh(x)
            elif kind == "Branches":  # every branch on the same x, joined along the last axis
                x = self.torch.cat([self.run(branch_modules, branch, x)
                                    for branch_modules, branch in zip(module, layer.branches)], dim=-1)
        return x

    def step(self, real, z):
        torch = self.torch
        bce = torch.nn.BCEWithLogitsLoss()
        fake = self.run(self.G, self.g_layers, z)
        self.d_opt.zero_grad()
        logits_real = self.run(self.D, self.d_layers, real)
        logits_fake = self.run(self.D, self.d_layers, fake.detach())
        d_loss = bce(logits_real, torch.ones_like(logits_real)) + bce(logits_fake, torch.zeros_like(logits_fake))
        d_loss.backward()
        self.d_opt.step()
        self.g_opt.zero_grad()
        logits = self.run(self.D, self.d_layers, fake)
        g_loss = bce(logits, torch.ones_like(logits))
        g_loss.backward()
        self.g_opt.step()
        return d_loss.item(), g_loss.item()


def three_steps_beside_torch(torch, gan, seed):
    """Three steps of `gan` and of its PyTorch copy on the same batches and noise, their
    losses equal to 1e-10 at each; returns the PyTorch copy."""
    reference = TorchDCGAN(torch, gan, lr=1e-2)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        real, z = np.tanh(rng.standard_normal((6, *IMAGE))), rng.standard_normal((6, 5))
        stats = gan.train_step(real, z)
        d_loss, g_loss = reference.step(torch.tensor(real), torch.tensor(z))
        assert stats["d_loss"] == pytest.approx(d_loss, rel=1e-10) and stats["g_loss"] == pytest.approx(g_loss, rel=1e-10)
    return reference


def test_three_dcgan_steps_match_pytorch_float64():
    torch = pytest.importorskip("torch", reason="PyTorch is the independent oracle (pip install torch==2.13.0)")
    gan = small_dcgan(mg.get_backend("numpy", "float64", seed=0))
    reference = three_steps_beside_torch(torch, gan, seed=3)
    # A convolution's bias that feeds BatchNorm has a zero gradient (BatchNorm subtracts the
    # batch mean), so what reaches it is rounding, which Adam scales up to steps of about lr:
    # those biases follow the rounding of each BLAS, and are compared 100x looser (a real
    # gradient would move them by lr, 1e-2, far beyond either tolerance).
    feeds_batchnorm = {("G", 4), ("D", 2)}
    for network, index in feeds_batchnorm:
        layer = (gan.generator if network == "G" else gan.discriminator).layers[index]
        assert type(layer).__name__ in ("Conv2d", "ConvTranspose2d")
        assert np.abs(layer.db).max() <= 1e-12  # the last step's gradient: rounding only
    ours = TorchDCGAN(torch, gan, 1e-2)  # our parameters after the steps, in torch's layout
    for network, modules, mine in (("G", reference.G, ours.G), ("D", reference.D, ours.D)):
        for index, (theirs, copied) in enumerate(zip(modules, mine)):
            for name, a, b in zip(("W", "b"), theirs.parameters(), copied.parameters()):
                scale = max(float(a.detach().abs().max()), 1e-300)
                tolerance = 1e-7 if name == "b" and (network, index) in feeds_batchnorm else 1e-9
                assert float((a - b).detach().abs().max()) / scale <= tolerance, (network, index, name)
    for ours_bn, torch_bn in ((gan.discriminator.layers[3], reference.D[3]), (gan.generator.layers[2], reference.G[2])):
        np.testing.assert_allclose(ours_bn.running_mean, torch_bn.running_mean.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ours_bn.running_var, torch_bn.running_var.numpy(), rtol=1e-9, atol=1e-12)


def test_three_steps_with_an_mlp_head_match_pytorch_float64():
    """D with two heads (its convolutions and an MLP beside them, `Branches`): each loss is the
    mean over both heads' logits, which torch's BCEWithLogitsLoss on the (N, 2) logits is too."""
    torch = pytest.importorskip("torch", reason="PyTorch is the independent oracle (pip install torch==2.13.0)")
    gan = small_dcgan(mg.get_backend("numpy", "float64", seed=0), mlp_head=(7, 5))
    G, D = gan.generator, gan.discriminator
    assert [type(layer).__name__ for layer in D.layers[0].branches[1]] == [
        "Flatten", "Dense", "LeakyReLU", "Dense", "LeakyReLU", "Dense"]
    assert D.output_shape == (2,) and not D.rows_independent
    reference = three_steps_beside_torch(torch, gan, seed=4)
    ours = TorchDCGAN(torch, gan, 1e-2)
    for network, modules, mine in (("G", reference.G, ours.G), ("D", reference.D, ours.D)):
        for (name, a), b in zip(modules.named_parameters(), mine.parameters()):
            # the convolution biases that feed BatchNorm get rounding only (see the test above)
            feeds_batchnorm = name in ("4.bias", "0.0.2.bias")
            scale = max(float(a.detach().abs().max()), 1e-300)
            assert float((a - b).detach().abs().max()) / scale <= (1e-7 if feeds_batchnorm else 1e-9), (network, name)
    np.testing.assert_allclose(D.layers[0].branches[0][3].running_var, reference.D[0][0][3].running_var.numpy(),
                               rtol=1e-9, atol=1e-12)


def test_wgan_gp_refuses_a_batchnorm_critic():
    be = mg.get_backend("numpy", "float64", seed=0)
    G = dcgan_generator(5, (6, 4), IMAGE, "tanh", "normal", be)
    D = dcgan_discriminator(IMAGE, (4, 6), "normal", be)
    with pytest.raises(ValueError, match="layer 3 is BatchNorm .*WGAN-GP paper drops BatchNorm"):
        GAN(G, D, loss="wgan-gp")


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("loss", ["non_saturating", "hinge", "wgan-gp"])
def test_every_loss_trains_with_packing_along_channels(backend_name, loss):
    be = mg.get_backend(backend_name, "float64", seed=0)
    gan = small_dcgan(be, loss=loss, pack=2, lr=1e-3)
    assert gan.discriminator.input_shape == (8, 8, 2)
    real = be.asarray(np.tanh(np.random.default_rng(0).standard_normal((4, *IMAGE))))
    packed = be.to_numpy(gan._packed(real))
    host = be.to_numpy(real)
    assert np.array_equal(packed[1, :, :, 0], host[2, :, :, 0]) and np.array_equal(packed[1, :, :, 1], host[3, :, :, 0])
    assert np.array_equal(be.to_numpy(gan._unpacked(gan._packed(real), IMAGE)), host)
    stats = gan.train_step(real)
    assert all(np.isfinite(value) for value in stats.values())


def test_sampling_uses_evaluation_mode():
    be = mg.get_backend("numpy", "float64", seed=0)
    gan = small_dcgan(be)
    z = np.random.default_rng(1).standard_normal((4, 5))
    first, second = gan.sample(4, z), gan.sample(2, z[:2])
    np.testing.assert_allclose(first[:2], second, rtol=1e-12)  # no batch statistics involved
    assert gan.generator.training  # and the mode is restored


@pytest.mark.parametrize("preset, running_var", [("dcgan-paper", "discriminator/3.running_var"),
                                                 ("dcgan-mlp-head", "discriminator/0.0.3.running_var")])
def test_a_dcgan_run_resumes_bit_exactly(tmp_path, preset, running_var):
    pytest.importorskip("sklearn")
    common = dict(data="digits", preset=preset, batch_size=8, progress=False, eval_samples=20, log_every=1)
    train(RunConfig(steps=6, out=str(tmp_path / "straight"), **common))
    train(RunConfig(steps=3, out=str(tmp_path / "resumed"), **common))
    train(RunConfig(steps=6, progress=False), resume=str(tmp_path / "resumed"))
    straight = assert_same_checkpoint_arrays(tmp_path / "straight", tmp_path / "resumed")
    assert running_var in straight


def test_a_run_of_the_paper_recipe_saved_under_its_old_name_resumes_bit_exactly(tmp_path, monkeypatch):
    """`dcgan` named the paper's networks until the final recipe took the name: a checkpoint
    recording preset "dcgan" with those networks resumes as it started."""
    pytest.importorskip("sklearn")
    from minigan.run import presets
    common = dict(data="digits", batch_size=8, progress=False, eval_samples=20, log_every=1)
    train(RunConfig(steps=6, preset="dcgan-paper", out=str(tmp_path / "straight"), **common))
    with monkeypatch.context() as patch:  # the earlier minigan's table
        patch.setitem(presets.PRESETS, "dcgan", presets.PRESETS["dcgan-paper"])
        train(RunConfig(steps=3, preset="dcgan", out=str(tmp_path / "resumed"), **common))
    assert presets.PRESETS["dcgan"].discriminator_hidden == (64, 128, 256)  # today's dcgan
    train(RunConfig(steps=6, progress=False), resume=str(tmp_path / "resumed"))
    assert_same_checkpoint_arrays(tmp_path / "straight", tmp_path / "resumed")


def test_the_scaling_benchmark_can_time_every_dcgan_gan_preset():
    from minigan.bench.scaling import SHAPES
    from minigan.run.presets import PRESETS
    dcgans = {name for name, preset in PRESETS.items() if preset.architecture == "dcgan" and preset.family == "gan"}
    assert dcgans == {"dcgan-paper", "dcgan-mlp-head", "dcgan-wide-g", "dcgan", "dcgan-best"} and dcgans <= set(SHAPES)
