"""A strict CPU stand-in for CuPy: the test suite's third backend, "strict_cupy".

It computes with NumPy but behaves as CuPy does where the two differ, so that every numeric
test checks minigan's CuPy path on a machine without a GPU (tests/conftest.py registers it
with `minigan.backend.register_array_module` and adds it to `BACKENDS`):

- `xp`, its array module, offers only names that CuPy has: `MODULE_NAMES`, the ones minigan
  and its tests use (tests/test_backend.py checks each against an installed CuPy), plus
  `ndarray`, `asnumpy` and `lib.stride_tricks`. A name missing here fails as it would on a
  CuPy without it; add it only after checking that CuPy has it.
- Its arrays (`StrictArray`, i.e. `xp.ndarray`) never become host arrays implicitly:
  `numpy.asarray(a)` raises CuPy's TypeError; `xp.asnumpy(a)` and `a.get()` copy to the host.
- An operation mixing one with a `numpy.ndarray` (even 0-d) or a list raises TypeError, and
  assigning a non-scalar host array or list to a basic slice raises ValueError, as in CuPy;
  Python and NumPy scalars mix freely. `xp.asarray` / `xp.array` take host data (an explicit
  host-to-device copy), every other `xp` function refuses host arrays.
- Reductions and element access give 0-d arrays, never scalars. `float()`, `int()` and
  `complex()` take 0-d arrays only and `bool()` one-element arrays (CuPy converts through
  `.get()`, where NumPy >= 2.4 refuses ndim > 0; the stand-in refuses it on every NumPy);
  there is no `__index__` and no `__round__`, as in CuPy.

One deliberate difference: NumPy functions and ufuncs refuse these arrays (`numpy.exp(a)`
raises TypeError), where CuPy hands those it implements to itself through
`__array_function__` / `__array_ufunc__`. minigan calls them through its backend's `xp`,
and the stand-in keeps it that way.
"""
from __future__ import annotations

import operator
import types
from typing import Any, Callable

import numpy as np

# CuPy module names that minigan and its tests use; each is CuPy's (checked by test_backend.py).
MODULE_NAMES = (
    "abs", "arange", "array", "asarray", "ascontiguousarray", "clip", "concatenate", "divide", "einsum", "empty",
    "exp", "float32", "float64", "full_like", "isfinite", "log", "log1p", "matmul", "maximum",
    "mean", "moveaxis", "multiply", "negative", "ones_like", "pad", "repeat", "shares_memory",
    "sqrt", "subtract", "sum", "tanh", "where", "zeros", "zeros_like",
)
STRIDE_TRICKS_NAMES = ("as_strided", "sliding_window_view")  # cupy.lib.stride_tricks
# cupy.ndarray's attributes that numpy.ndarray shares (CUDA-only ones, `get` and `flags` aside)
ARRAY_NAMES = (
    "T", "all", "any", "argmax", "argmin", "argsort", "astype", "clip", "copy", "cumsum",
    "diagonal", "dot", "dtype", "fill", "flatten", "item", "itemsize", "max", "mean",
    "min", "nbytes", "ndim", "nonzero", "prod", "ravel", "repeat", "reshape", "round", "shape",
    "size", "sort", "squeeze", "std", "strides", "sum", "swapaxes", "take", "tolist",
    "transpose", "var", "view",
)
HOST_DATA_FUNCTIONS = ("array", "asarray")  # the explicit host-to-device copies
SCALAR_TYPES = (bool, int, float, complex, np.generic)
BASIC_INDEX_TYPES = (int, np.integer, slice, type(None), type(Ellipsis))
IMPLICIT_CONVERSION = ("Implicit conversion to a NumPy array is not allowed. "
                       "Please use `.get()` to construct a NumPy array explicitly.")


def _refuse(value: Any) -> TypeError:
    return TypeError(f"Unsupported type {type(value)}")  # CuPy's words for host data in an op


def _operand(value: Any) -> Any:
    """An operand of an arithmetic operation or ufunc: a strict array's data or a scalar."""
    if isinstance(value, StrictArray):
        return value._data
    if isinstance(value, SCALAR_TYPES):
        return value
    raise _refuse(value)


def _unwrap(value: Any, originals: list, host_data: bool = False) -> Any:
    """`value` with strict arrays replaced by their data (remembered in `originals`), nested
    lists and tuples included; host arrays refused unless `host_data`."""
    if isinstance(value, StrictArray):
        originals.append(value)
        return value._data
    if isinstance(value, np.ndarray) and not host_data:
        raise _refuse(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(item, originals, host_data) for item in value)
    return value


def _wrap(result: Any, originals: list = ()) -> Any:
    """NumPy results as strict arrays: an input's own data as that input (`out=`, no-copy
    `asarray`), scalars as 0-d arrays, tuples element by element."""
    if isinstance(result, np.ndarray):
        for original in originals:
            if original._data is result:
                return original
        return StrictArray(result)
    if isinstance(result, np.generic):
        return StrictArray(np.asarray(result))
    if isinstance(result, tuple):
        return tuple(_wrap(item, originals) for item in result)
    return result


def _call(function: Callable, args: tuple, kwargs: dict, originals: list, host_data: bool = False) -> Any:
    args = _unwrap(args, originals, host_data)
    kwargs = {key: _unwrap(value, originals, host_data) for key, value in kwargs.items()}
    return _wrap(function(*args, **kwargs), originals)


def _index(key: Any) -> Any:
    """An index with strict arrays unwrapped; host index arrays are fine (CuPy copies them)."""
    if isinstance(key, tuple):
        return tuple(item._data if isinstance(item, StrictArray) else item for item in key)
    return key._data if isinstance(key, StrictArray) else key


class StrictArray:
    """A NumPy array behind CuPy's `ndarray` interface: see the module docstring."""

    __slots__ = ("_data",)
    __array_ufunc__ = None  # NumPy's operators and ufuncs defer to this class, which refuses
    __hash__ = None

    def __init__(self, data: np.ndarray):
        self._data = data

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError(IMPLICIT_CONVERSION)

    def get(self) -> np.ndarray:
        """A host copy, C-ordered (CuPy's `ndarray.get`)."""
        return self._data.copy()

    def _scalar(self, convert: Callable) -> Any:
        if self._data.ndim:
            raise TypeError("only 0-dimensional arrays can be converted to Python scalars")
        return convert(self._data)

    def __float__(self) -> float:
        return self._scalar(float)

    def __int__(self) -> int:
        return self._scalar(int)

    def __complex__(self) -> complex:
        return self._scalar(complex)

    def __bool__(self) -> bool:
        return bool(self._data)  # one element only, as in CuPy

    @property
    def flags(self) -> types.SimpleNamespace:
        """The three flags CuPy has."""
        flags = self._data.flags
        return types.SimpleNamespace(c_contiguous=flags.c_contiguous, f_contiguous=flags.f_contiguous,
                                     owndata=flags.owndata)

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self._data)))

    def __getitem__(self, key: Any) -> "StrictArray":
        return _wrap(self._data[_index(key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        key = _index(key)
        if isinstance(value, StrictArray):
            value = value._data
        elif (not isinstance(value, SCALAR_TYPES) and np.ndim(value) != 0
              and all(isinstance(item, BASIC_INDEX_TYPES) for item in (key if isinstance(key, tuple) else (key,)))):
            # CuPy fills basic slices from scalars only ("Refuse assignment from CPU arrays")
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        self._data[key] = value

    def __repr__(self) -> str:
        return repr(self._data)

    def __str__(self) -> str:
        return str(self._data)

    def __format__(self, format_spec: str) -> str:
        return format(self._data, format_spec)

    def __copy__(self) -> "StrictArray":
        return StrictArray(self._data.copy())

    def __deepcopy__(self, memo: dict) -> "StrictArray":
        return StrictArray(self._data.copy())


def _forward(operation: Callable) -> Callable:
    return lambda self, other: _wrap(operation(self._data, _operand(other)))


def _reflected(operation: Callable) -> Callable:
    return lambda self, other: _wrap(operation(_operand(other), self._data))


def _in_place(operation: Callable) -> Callable:
    def in_place(self, other):
        operation(self._data, _operand(other))
        return self
    return in_place


def _comparison(operation: Callable) -> Callable:
    def compare(self, other):  # an unrelated object (None) compares by identity
        if isinstance(other, (StrictArray, SCALAR_TYPES, np.ndarray, list)):
            return _wrap(operation(self._data, _operand(other)))
        return NotImplemented
    return compare


def _unary(operation: Callable) -> Callable:
    return lambda self: _wrap(operation(self._data))


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or",
              "xor", "lshift", "rshift"):
    setattr(StrictArray, f"__{_name}__", _forward(getattr(operator, f"__{_name}__")))
    setattr(StrictArray, f"__r{_name}__", _reflected(getattr(operator, f"__{_name}__")))
    if _name != "matmul":  # CuPy has no in-place @
        setattr(StrictArray, f"__i{_name}__", _in_place(getattr(operator, f"__i{_name}__")))
StrictArray.__divmod__, StrictArray.__rdivmod__ = _forward(divmod), _reflected(divmod)
for _name in ("lt", "le", "eq", "ne", "gt", "ge"):
    setattr(StrictArray, f"__{_name}__", _comparison(getattr(operator, f"__{_name}__")))
for _name in ("neg", "pos", "abs", "invert"):
    setattr(StrictArray, f"__{_name}__", _unary(getattr(operator, f"__{_name}__")))


def _array_attribute(name: str) -> Any:
    if not callable(getattr(np.ndarray, name)):  # a property: shape, dtype, T, ...
        def read(self):
            value = getattr(self._data, name)
            return StrictArray(value) if isinstance(value, np.ndarray) else value
        return property(read)

    def method(self, *args, **kwargs):
        return _call(getattr(self._data, name), args, kwargs, [self])
    method.__name__ = name
    return method


for _name in ARRAY_NAMES:
    setattr(StrictArray, _name, _array_attribute(_name))


def asnumpy(array: Any) -> np.ndarray:
    """A host copy of a strict array; other input as `numpy.asarray` (CuPy's `asnumpy`)."""
    return array.get() if isinstance(array, StrictArray) else np.asarray(array)


def _function(name: str, target: Any) -> Any:
    """The stand-in for `cupy.<name>`, delegating to NumPy's `target`."""
    if isinstance(target, type) or not callable(target):  # dtypes and constants pass through
        return target
    if isinstance(target, np.ufunc):
        def function(*operands, **kwargs):  # operands: arrays and scalars only, no lists
            originals = []
            kwargs = {key: _unwrap(value, originals) for key, value in kwargs.items()}  # out=, where=
            return _wrap(target(*map(_operand, operands), **kwargs), originals)
    else:
        def function(*args, **kwargs):
            return _call(target, args, kwargs, [], host_data=name in HOST_DATA_FUNCTIONS)
    function.__name__ = name
    return function


def _module(name: str, names: tuple[str, ...], source: Any, doc: str) -> types.ModuleType:
    module = types.ModuleType(name, doc)
    for item in names:
        setattr(module, item, _function(item, getattr(source, item)))
    return module


xp = _module("strict_cupy", MODULE_NAMES, np, "CuPy's names that minigan uses, computed by NumPy on the host.")
xp.ndarray, xp.asnumpy = StrictArray, asnumpy
xp.lib = types.ModuleType("strict_cupy.lib")
xp.lib.stride_tricks = _module("strict_cupy.lib.stride_tricks", STRIDE_TRICKS_NAMES,
                               np.lib.stride_tricks, "cupy.lib.stride_tricks on the host.")
