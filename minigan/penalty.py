"""The WGAN-GP gradient penalty and its parameter gradient, by hand ("double backprop").

    P = weight * mean_i (||g_i|| - 1)^2,   g_i = grad_x D(x_hat_i),   ||g|| = sqrt(sum g^2 + eps)

g comes from an ordinary backward pass seeded with ones. P depends on the critic's
parameters through that backward pass, so dP/dtheta is the reverse-mode derivative of
the backward pass itself. Writing the layers L_1..L_K, forward x_k = L_k(x_{k-1}) and
backward d_{k-1} = B_k(d_k, x_{k-1}) with d_K = 1 and g = d_0, and u = dP/dg:

  1. Through the backward pass, first layer to last, carrying a = dP/dd_k (a = u at d_0):
     Dense   (d_in = d_out W^T):     dW += a^T d_out;    a <- a W
     Conv2d  (d_in = conv^T(d_out)): dW += conv weight gradient of (input a, output d_out);
                                     a <- conv(a), without the bias (a convolution's second
                                     derivative is a convolution again)
     Flatten (d_in = reshape(d_out)): a <- a reshaped like d_out
     act. s  (d_in = d_out * s'(x)): a <- a * s'(x);     inject a * d_out * s''(x) at x
  2. Through the forward pass, last layer to first: an ordinary backward pass whose
     gradient starts at zero and receives the injected terms at each layer's input
     (only Tanh has s'' != 0 among the supported layers; ReLU and LeakyReLU have s'' = 0).
"""
from __future__ import annotations

from typing import Any

from .conv import Conv2d
from .layers import Dense, Flatten, LeakyReLU, ReLU, Reshape, Tanh

SUPPORTED_LAYERS = (Dense, Conv2d, Flatten, Reshape, ReLU, LeakyReLU, Tanh)


def check_supported(critic: Any) -> None:
    """ValueError when the critic has a layer the penalty cannot differentiate twice."""
    for index, layer in enumerate(critic.layers):
        if not isinstance(layer, SUPPORTED_LAYERS):
            names = ", ".join(cls.__name__ for cls in SUPPORTED_LAYERS)
            why = (" (the WGAN-GP paper drops BatchNorm from the critic: the penalty is per "
                   "example, batch statistics couple the examples)" if not layer.rows_independent else "")
            raise ValueError(f"the gradient penalty supports critics made of {names} layers; "
                             f"layer {index} is {type(layer).__name__}{why}")


def _activation_derivatives(layer: Any, xp: Any) -> tuple[Any, Any]:
    """s'(x) and s''(x) (None when zero) of an activation, from its forward cache."""
    if isinstance(layer, ReLU):
        return (layer.y > 0).astype(layer.y.dtype), None
    if isinstance(layer, LeakyReLU):
        return layer.derivative, None
    first = 1 - layer.y * layer.y  # tanh' = 1 - tanh^2
    return first, -2 * layer.y * first  # tanh'' = -2 tanh (1 - tanh^2)


def gradient_penalty(critic: Any, x_hat: Any, weight: float = 10.0, eps: float = 1e-12) -> float:
    """Computes the penalty at `x_hat` (N, *input_shape) and *adds* its gradient into critic.grads.

    Args:
        critic: a Sequential of the SUPPORTED_LAYERS with one output.
        x_hat: the points where the input gradient's norm is penalised.
        weight: lambda, the penalty's weight (10 in Gulrajani et al.).
        eps: added inside the square root of the norm, so it never divides by zero.

    Returns:
        The penalty's value (a Python float).
    """
    check_supported(critic)
    xp, layers = critic.backend.xp, critic.layers
    output = critic.forward(x_hat)  # (N, 1)
    grads_out = [None] * (len(layers) + 1)  # grads_out[k] = d_k, the gradient at layer k's output
    grads_out[-1] = xp.ones_like(output)
    for k in range(len(layers) - 1, -1, -1):
        grads_out[k] = layers[k].backward(grads_out[k + 1], grads="skip")
    g = grads_out[0]  # (N, *shape): grad_x D(x_hat_i), example by example
    norms = xp.sqrt(xp.sum(g * g, axis=tuple(range(1, g.ndim)), keepdims=True) + eps)  # (N, 1, ...)
    value = weight * float(xp.mean((norms - 1) ** 2))
    adjoint = g * (2 * weight / g.shape[0] * (norms - 1) / norms)  # u = dP/dg, (N, features)

    injected: list[Any] = [None] * len(layers)  # dP/dx at each layer's input, from step 1
    for k, layer in enumerate(layers):
        if isinstance(layer, Dense):
            layer.dW += adjoint.T @ grads_out[k + 1]  # (in, out)
            adjoint = adjoint @ layer.W              # (N, out)
        elif isinstance(layer, Conv2d):
            layer.dW += layer.weight_gradient(adjoint, grads_out[k + 1])  # (kh, kw, in, out)
            adjoint = layer.linear(adjoint)                                # (N, Ho, Wo, out)
        elif isinstance(layer, (Flatten, Reshape)):
            adjoint = adjoint.reshape(grads_out[k + 1].shape)
        else:
            first, second = _activation_derivatives(layer, xp)
            if second is not None:
                injected[k] = adjoint * grads_out[k + 1] * second
            adjoint = adjoint * first

    upstream = None  # dP/d(output of layer k) along the forward pass, zero at the top
    for k in range(len(layers) - 1, -1, -1):
        if upstream is not None:
            upstream = layers[k].backward(upstream, input_grad=k > 0)
        if injected[k] is not None:
            upstream = injected[k] if upstream is None else upstream + injected[k]
    return value
