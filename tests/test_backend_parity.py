"""Backend parity: every layer, loss, likelihood, GAN objective, optimizer and model-family
step computes on each other backend what it computes on NumPy, from the same seed and the
same host data, to float64 and float32 tolerances.

The other backends are the strict CuPy stand-in (always) and CuPy (with a CUDA device);
benchmarks/gpu_report.py runs this file on a real GPU with `-k "cupy and not strict_cupy"`.
Coverage tests fail when a layer type, optimizer or model family is added without a case here.
"""
import numpy as np
import pytest

import minigan as mg
from minigan.backend import to_host
from minigan.layers import LAYER_TYPES
from minigan.likelihoods import LIKELIHOODS, LogSigma
from minigan.objectives import OBJECTIVES
from minigan.optim import Optimizer
from minigan.run.architectures import dcgan_discriminator, dcgan_generator
from minigan.trainable import Trainable

from conftest import BACKENDS

DEVICES = [name for name in BACKENDS if name != "numpy"]  # each compared against NumPy
TOLERANCES = {"float64": {"rtol": 1e-9, "atol": 1e-11}, "float32": {"rtol": 1e-4, "atol": 1e-5}}
BATCH = 6


@pytest.fixture(params=DEVICES)
def device(request):
    """A backend name other than numpy that this machine can run."""
    return request.param


@pytest.fixture(params=sorted(TOLERANCES))
def dtype(request):
    return request.param


def run_on_both(device, dtype, compute, seed=0):
    """compute(backend) on NumPy and on `device`, each with a fresh backend of one seed;
    returns both results with every array copied to the host."""
    return [host_copy(compute(mg.get_backend(name, dtype, seed=seed))) for name in ("numpy", device)]


def host_copy(value):
    """value with every backend array (inside dicts, lists and tuples) copied to the host."""
    if isinstance(value, dict):
        return {key: host_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [host_copy(item) for item in value]
    if isinstance(value, (int, float, str, type(None))):
        return value
    return to_host(value)


def assert_parity(expected, actual, dtype, where="result"):
    """Equal structure, equal dtypes, values within the dtype's tolerance."""
    if isinstance(expected, dict):
        assert sorted(actual) == sorted(expected), where
        for key in expected:
            assert_parity(expected[key], actual[key], dtype, f"{where}[{key!r}]")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), where
        for index, (want, got) in enumerate(zip(expected, actual)):
            assert_parity(want, got, dtype, f"{where}[{index}]")
    elif isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray) and actual.dtype == expected.dtype, where
        assert actual.shape == expected.shape, where
        np.testing.assert_allclose(actual, expected, **TOLERANCES[dtype], err_msg=where)
    else:
        np.testing.assert_allclose(actual, expected, **TOLERANCES[dtype], err_msg=where)


def host_data(shape, seed=1, low=None):
    """Host float64 data: N(0, 1), or U(low, 1) when `low` is given."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape) if low is None else rng.uniform(low, 1, shape)


# ---------------------------------------------------------------- layers

LAYER_CASES = {  # layer type -> (a fresh layer, its input shape without the batch axis)
    "Dense": (lambda: mg.Dense(5, 3), (5,)),
    "ReLU": (mg.ReLU, (7,)),
    "LeakyReLU": (lambda: mg.LeakyReLU(0.2), (7,)),
    "Sigmoid": (mg.Sigmoid, (7,)),
    "Tanh": (mg.Tanh, (7,)),
    "Flatten": (mg.Flatten, (3, 2, 2)),
    "Reshape": (lambda: mg.Reshape((3, 2)), (6,)),
    "Conv2d": (lambda: mg.Conv2d(2, 3, 3, stride=2, padding=1), (7, 7, 2)),
    "ConvTranspose2d": (lambda: mg.ConvTranspose2d(3, 2, 4, stride=2, padding=1), (4, 4, 3)),
    "BatchNorm": (lambda: mg.BatchNorm(3), (4, 4, 3)),
    "LogSigma": (lambda: LogSigma(0.3), (4,)),
    "Branches": (lambda: mg.Branches([[mg.Conv2d(2, 3, 3, stride=2, padding=1), mg.BatchNorm(3), mg.LeakyReLU(0.2),
                                       mg.Flatten(), mg.Dense(48, 1)],
                                      [mg.Flatten(), mg.Dense(98, 4), mg.Tanh(), mg.Dense(4, 2)]]), (7, 7, 2)),
}


def test_every_layer_type_has_a_parity_case():
    library = {name for name, cls in LAYER_TYPES.items()
               if cls.__module__.startswith("minigan.") and not name.startswith("_")}
    assert library == set(LAYER_CASES)


def layer_pass(backend, name, training):
    """One forward and one backward pass of a one-layer model: output, dx, gradients, buffers."""
    make, shape = LAYER_CASES[name]
    model = mg.Sequential([make()], backend=backend, input_shape=shape).train(training)
    if model.buffers.size:  # running statistics that eval mode reads
        model.buffers[...] = backend.asarray(host_data(model.buffers.shape, seed=2, low=0.5))
    y = model.forward(backend.asarray(host_data((BATCH, *shape))))  # (N, *output_shape)
    dx = model.backward(backend.asarray(host_data(y.shape, seed=3)))  # (N, *shape)
    return {"y": y, "dx": dx, "params": model.params, "grads": model.grads, "buffers": model.buffers}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_layer(device, dtype, name, training):
    expected, actual = run_on_both(device, dtype, lambda backend: layer_pass(backend, name, training))
    assert_parity(expected, actual, dtype, name)


# ---------------------------------------------------------------- losses, likelihoods, objectives


def loss_pass(backend, name):
    """Value and dL/dlogits of one loss on fixed host logits and targets."""
    logits = backend.asarray(host_data((BATCH, 4)))  # (N, 4)
    if name == "softmax_cross_entropy":
        loss = mg.SoftmaxCrossEntropy()
        labels = backend.xp.asarray(np.random.default_rng(4).integers(0, 4, BATCH))  # (N,)
        value = loss.forward(logits, labels)
    else:
        loss = mg.BCEWithLogits()
        value = loss.forward(logits, 1.0 if name == "bce_scalar_target" else
                             backend.asarray(host_data(logits.shape, seed=4, low=0.0)))
    return {"value": value, "grad": loss.backward()}


@pytest.mark.parametrize("name", ["bce", "bce_scalar_target", "softmax_cross_entropy"])
def test_loss(device, dtype, name):
    expected, actual = run_on_both(device, dtype, lambda backend: loss_pass(backend, name))
    assert_parity(expected, actual, dtype, name)


def likelihood_pass(backend, name):
    """nll, its gradient, log_prob and mean of one likelihood on data in [0, 1]."""
    likelihood = LIKELIHOODS[name](backend.asarray([0.3]))
    x = backend.asarray(host_data((BATCH, 3, 3, 1), low=0.0))       # (N, 3, 3, 1)
    out = backend.asarray(host_data((BATCH, 3, 3, 1), seed=5))      # the decoder's output
    return {"nll": likelihood.nll(x, out), "grad": likelihood.grad(x, out),
            "log_prob": likelihood.log_prob(x, out), "mean": likelihood.mean(out)}


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_likelihood(device, dtype, name):
    expected, actual = run_on_both(device, dtype, lambda backend: likelihood_pass(backend, name))
    assert_parity(expected, actual, dtype, name)


def objective_pass(backend, name):
    """Every term of one GAN objective, and the concatenated discriminator loss."""
    objective = OBJECTIVES[name]()
    logits = backend.asarray(host_data((BATCH, 1)))  # (N, 1): D(real) then D(fake)
    real, fake = logits[:BATCH // 2], logits[BATCH // 2:]
    return {"real": objective.discriminator_real(real), "fake": objective.discriminator_fake(fake),
            "generator": objective.generator(fake), "both": objective.discriminator(logits, BATCH // 2)}


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_objective(device, dtype, name):
    expected, actual = run_on_both(device, dtype, lambda backend: objective_pass(backend, name))
    assert_parity(expected, actual, dtype, name)


# ---------------------------------------------------------------- optimizers

OPTIMIZERS = {
    "sgd": lambda model: mg.SGD(model, lr=0.1),
    "sgd_momentum": lambda model: mg.SGD(model, lr=0.1, momentum=0.9),
    "adam": lambda model: mg.Adam(model, lr=1e-2, betas=(0.5, 0.999)),
    "rmsprop": lambda model: mg.RMSProp(model, lr=1e-2, alpha=0.9),
}


def test_every_optimizer_has_a_parity_case():
    made = {type(make(mg.Sequential([mg.Dense(2, 1)]))).__name__ for make in OPTIMIZERS.values()}
    assert made == {cls.__name__ for cls in Optimizer.__subclasses__()}


def optimizer_steps(backend, name, steps=4):
    """`steps` updates of one optimizer from fixed host gradients; its state after each."""
    model = mg.Sequential([mg.Dense(6, 5)], backend=backend)
    optimizer = OPTIMIZERS[name](model)
    history = []
    for step in range(steps):
        gradient = host_data(model.grads.shape, seed=10 + step)
        gradient[:3] = 0.0  # Adam and RMSProp then divide 0 by eps
        model.grads[...] = backend.asarray(gradient)
        optimizer.step()
        history.append({"params": model.params.copy(), **optimizer.state_dict()})
    return history


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer(device, dtype, name):
    expected, actual = run_on_both(device, dtype, lambda backend: optimizer_steps(backend, name))
    assert_parity(expected, actual, dtype, name)


# ---------------------------------------------------------------- model-family steps


def mlp_gan(backend, loss):
    G = mg.Sequential([mg.Dense(3, 8), mg.ReLU(), mg.Dense(8, 4)], backend=backend)
    D = mg.Sequential([mg.Dense(4, 8), mg.LeakyReLU(0.2), mg.Dense(8, 1)], backend=backend)
    return mg.GAN(G, D, loss=loss, d_steps=1), (4,)


def small_dcgan(backend):
    """Convolutions and BatchNorm in both networks; D runs real and fake in two passes."""
    G = dcgan_generator(5, (6, 4), (8, 8, 1), "tanh", "normal", backend)
    D = dcgan_discriminator((8, 8, 1), (4, 6), "normal", backend)
    return mg.GAN(G, D), (8, 8, 1)


def small_vae(backend, likelihood):
    E = mg.Sequential([mg.Flatten(), mg.Dense(9, 6), mg.Tanh(), mg.Dense(6, 4)], backend=backend,
                      input_shape=(3, 3, 1))
    D = mg.Sequential([mg.Dense(2, 6), mg.Tanh(), mg.Dense(6, 9), mg.Reshape((3, 3, 1))], backend=backend)
    return mg.VAE(E, D, likelihood=likelihood, log_sigma=0.3), (3, 3, 1)


def small_vaegan(backend):
    E = mg.Sequential([mg.Dense(4, 6), mg.Tanh(), mg.Dense(6, 4)], backend=backend)
    G = mg.Sequential([mg.Dense(2, 6), mg.BatchNorm(6), mg.Tanh(), mg.Dense(6, 4), mg.Tanh()], backend=backend)
    D = mg.Sequential([mg.Dense(4, 6), mg.BatchNorm(6), mg.LeakyReLU(0.2), mg.Dense(6, 5), mg.Tanh(),
                       mg.Dense(5, 1)], backend=backend)
    return mg.VAEGAN(E, G, D, feature_layer=2, gamma=0.7), (4,)


FAMILIES = {  # case -> backend -> (model family, data shape)
    **{f"gan_{loss}": (lambda backend, loss=loss: mlp_gan(backend, loss)) for loss in sorted(OBJECTIVES)},
    "dcgan": small_dcgan,
    **{f"vae_{name}": (lambda backend, name=name: small_vae(backend, name)) for name in sorted(LIKELIHOODS)},
    "vaegan": small_vaegan,
}


def test_every_model_family_has_a_parity_case():
    made = {type(make(mg.get_backend("numpy"))[0]).__name__ for make in FAMILIES.values()}
    assert made == {cls.__name__ for cls in Trainable.__subclasses__()}


def family_steps(backend, case, steps=2):
    """`steps` training steps on fixed host data (in [0, 1]: every likelihood's range), the
    statistics of each, then the whole state and a few samples."""
    family, shape = FAMILIES[case](backend)
    stats = [family.train_step(backend.asarray(host_data((BATCH, *shape), seed=20 + step, low=0.0)))
             for step in range(steps)]
    return {"stats": stats, "state": family.state_dict(), "samples": family.sample(3)}


@pytest.mark.parametrize("case", sorted(FAMILIES))
def test_model_family_step(device, dtype, case):
    expected, actual = run_on_both(device, dtype, lambda backend: family_steps(backend, case))
    assert_parity(expected, actual, dtype, case)
