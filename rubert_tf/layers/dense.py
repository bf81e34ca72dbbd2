"""A Dense layer's matmul written as one 2-D MatMul + bias add (+ activation), for speed on CPU."""

import keras
from keras import ops

# Benchmarks flip this to measure the plain `layer(x)` path against the 2-D one; users never need to.
_ENABLED = True


def _plain(layer):
    """True for a built, float, LoRA-free Dense without its own activation (the only case rewritten)."""
    return (_ENABLED and isinstance(layer, keras.layers.Dense) and layer.built
            and layer.activation in (None, keras.activations.linear)
            and not getattr(layer, "lora_enabled", False) and getattr(layer, "quantization_mode", None) is None)


def dense_2d(layer, x, activation=None):
    """`activation(layer(x))` for a Dense `layer` and x [..., in], computed as reshape to [N, in] ->
    MatMul -> bias add (-> activation) -> reshape back, with the layer's own variables.

    Keras' Dense sends a 3-D input through tensordot, whose reshape sits between the MatMul and the
    bias add; here the MatMul, bias add and activation are adjacent, which (presumably through TF's
    oneDNN graph rewrite, which fuses such chains) measured faster: tiny2 32x128 inference +17% float32
    and +14% bfloat16, rubert-base 8x128 bfloat16 +91% (the exact GELU in bfloat16 was its bottleneck);
    see BENCHMARKS.md. Same variables, same math. Layers with LoRA, quantization or their own
    activation go through `layer(x)`.
    """
    if not _plain(layer):
        y = layer(x)
        return y if activation is None else activation(y)
    dtype = layer.compute_dtype
    x = ops.cast(x, dtype)
    shape = ops.shape(x)
    y = ops.matmul(ops.reshape(x, (-1, shape[-1])), ops.cast(layer.kernel, dtype))
    if layer.use_bias:
        y = ops.add(y, ops.cast(layer.bias, dtype))
    if activation is not None:
        y = activation(y)
    return ops.reshape(y, (*shape[:-1], layer.units))
