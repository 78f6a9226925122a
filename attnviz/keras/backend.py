"""The one module that speaks to Keras' backend (TensorFlow or JAX) directly; the rest of the
package speaks keras.ops and numpy.

- quiet_import: Keras and its backend imported without their start-up chatter, after a
  command's input is checked, so bad input is answered at once and `--help` never waits;
- softmax: the backend's own softmax (tf.nn.softmax, jax.nn.softmax), which capture
  intercepts, and the package prefix whose own code calls it (not intercepted);
- compiled: a function of the model's forward pass traced once by the backend's compiler
  (tf.function, or jax.jit with the model's variables passed in, so a trace never bakes in
  weights that training changes);
- gradient: the same, with the gradient of a scalar objective with respect to one argument
  (tf.GradientTape, jax.value_and_grad).

TensorFlow is the default backend; JAX is chosen with KERAS_BACKEND=jax (`train --backend`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import weakref
from collections.abc import Callable, Iterator

BACKENDS = ("tensorflow", "jax")


def choose(backend: str | None) -> None:
    """`train --backend`: run Keras on `backend` (None: KERAS_BACKEND, else tensorflow), set
    before Keras is imported; refused in one line when it is unknown, or when Keras already
    runs on another backend in this process."""
    from attnviz.errors import AttnvizError

    if backend is None:
        return
    if backend not in BACKENDS:
        raise AttnvizError(f"--backend {backend}: attnviz runs on {' or '.join(BACKENDS)}")
    if "keras" in sys.modules:
        import keras

        running = keras.backend.backend()
        if running != backend:
            raise AttnvizError(f"--backend {backend}: Keras already runs on {running} in this "
                               f"process; set KERAS_BACKEND={backend} before it starts")
        return
    os.environ["KERAS_BACKEND"] = backend


def requested() -> str:
    """The backend Keras runs on, or will once imported (KERAS_BACKEND, else tensorflow),
    without importing it."""
    if "keras" in sys.modules:
        import keras

        return keras.backend.backend()
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def quiet_import() -> None:
    """Import Keras with its backend's C++ start-up chatter (oneDNN, absl) sent to
    /dev/null."""
    if "keras" in sys.modules:
        return
    with quiet_stderr():
        import keras  # noqa: F401  (imports its backend)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Standard error, C++ included, sent to /dev/null: for imports whose start-up chatter
    (TensorFlow's absl and CUDA lines) would reach the user, e.g. TensorFlow imported by
    keras.utils.set_random_seed on JAX."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def host_devices(devices: int) -> str:
    """XLA's flag that splits the CPU into `devices` devices for JAX, set in XLA_FLAGS (once)
    for JAX to read when it starts; returned for messages."""
    flag = f"--xla_force_host_platform_device_count={devices}"
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count=")]
    os.environ["XLA_FLAGS"] = " ".join([*flags, flag])
    return flag


def name() -> str:
    """The backend Keras runs on: "tensorflow" or "jax"; another is refused in one line."""
    import keras

    from attnviz.errors import AttnvizError

    backend = keras.backend.backend()
    if backend not in BACKENDS:
        raise AttnvizError(f"Keras runs on the {backend} backend; attnviz runs on "
                           f"{' and '.join(BACKENDS)}: set KERAS_BACKEND=tensorflow or jax")
    return backend


def softmax() -> tuple[Callable, str]:
    """The backend's own softmax, and the prefix of the modules that implement the backend
    (their own calls of it are not attention a layer asked for)."""
    if name() == "jax":
        import jax

        return jax.nn.softmax, "jax._src"
    import tensorflow as tf

    return tf.nn.softmax, "tensorflow.python"


def softmax_axis(args: tuple, kwargs: dict) -> int | tuple | None:
    """The axis a call of the backend's softmax normalises over: tf.nn.softmax(logits,
    axis=None (-1), name=None); jax.nn.softmax(x, axis=-1, where=None)."""
    if "axis" in kwargs:
        axis = kwargs["axis"]
    elif args:
        axis = args[0]
    else:
        return -1
    if axis is None:
        return -1 if name() == "tensorflow" else None  # jax: every axis at once
    return axis


def compiled(model, function: Callable) -> Callable:
    """`function(run, *arrays)`, where run(x) is the model's forward pass (inference), traced
    once by the backend's compiler; the result is called with the arrays alone and gives
    numpy arrays in the function's structure. On JAX the model's variables are read at every
    call, so a trace made before training reads the trained weights after it."""
    import keras

    this = weakref.ref(model)  # a cache of compiled functions never keeps a model alive
    if name() == "tensorflow":

        traced = _TracedOnce(lambda *arrays: function(_eager(this), *arrays))
        return _with_count(lambda *arrays: keras.tree.map_structure(_numpy, traced(*arrays)),
                           traced.tracing_count)

    import jax

    def pure(state, *arrays):
        return function(_stateless(this(), state), *arrays)

    traced = jax.jit(pure)
    return _with_count(lambda *arrays: keras.tree.map_structure(
        _numpy, traced(model_state(this()), *arrays)), traced._cache_size)


def gradient(model, function: Callable, wrt: int) -> Callable:
    """`function(run, *arrays) -> (objective, aux)` traced once, returning (aux, the gradient
    of the scalar objective with respect to arrays[wrt]) as backend tensors (numpy on
    .numpy() / np.asarray)."""
    this = weakref.ref(model)
    if name() == "tensorflow":
        import tensorflow as tf

        def taped(*arrays):
            arrays = list(arrays)
            with tf.GradientTape() as tape:
                tape.watch(arrays[wrt])
                objective, aux = function(_eager(this), *arrays)
            return aux, tape.gradient(objective, arrays[wrt])

        traced = _TracedOnce(taped)
        return _with_count(traced, traced.tracing_count)

    import jax

    def pure(state, *arrays):
        return function(_stateless(this(), state), *arrays)

    traced = jax.jit(jax.value_and_grad(pure, argnums=1 + wrt, has_aux=True))

    def call(*arrays):
        (_, aux), grad = traced(model_state(this()), *arrays)
        return aux, grad

    return _with_count(call, traced._cache_size)


def model_state(model) -> tuple[list, list]:
    """The values of the model's variables now (on JAX, synced from a fit in progress)."""
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()
    return ([v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables])


class _TracedOnce:
    """tf.function of `function`, traced once for any batch size: its input signature is
    made from the first call's arrays, their first dimension left open (scalars as given)."""

    def __init__(self, function: Callable):
        self.function = function
        self.traced = None

    def __call__(self, *arrays):
        if self.traced is None:
            import keras
            import tensorflow as tf

            signature = [keras.tree.map_structure(_spec, array) for array in arrays]
            self.traced = tf.function(self.function, input_signature=signature)
        return self.traced(*arrays)

    def tracing_count(self) -> int:
        return 0 if self.traced is None else self.traced.experimental_get_tracing_count()


def _spec(array):
    import numpy as np
    import tensorflow as tf

    array = array if isinstance(array, tf.Tensor) else np.asarray(array)
    shape = tuple(array.shape)
    return tf.TensorSpec((None, *shape[1:]) if shape else (), tf.as_dtype(array.dtype))


def _with_count(call: Callable, count: Callable[[], int]) -> Callable:
    """`call`, with tracing_count(): how often the backend traced it (tests check it)."""
    call.tracing_count = count
    return call


def _eager(this):
    """run(x): the forward pass of the model `this` refers to."""
    return lambda x: this()(x, training=False)


def _stateless(model, state):
    """run(x): the model's forward pass on the variable values `state`, through the model's
    own __call__ (so every layer is called as in an eager pass)."""
    import keras

    trainable, non_trainable = state
    mapping = [*zip(model.trainable_variables, trainable, strict=True),
               *zip(model.non_trainable_variables, non_trainable, strict=True)]

    def run(x):
        with keras.StatelessScope(state_mapping=mapping):
            return model(x, training=False)

    return run


def _numpy(value):
    import numpy as np

    return np.asarray(value)


def tensor(array, dtype: str | None = None):
    """An array as the backend's tensor."""
    import keras

    return keras.ops.convert_to_tensor(array, dtype=dtype)
