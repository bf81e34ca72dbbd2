"""How the functional models keep their dtype policy through get_config / from_config (as keras-hub's
Backbone does): a model built with `dtype="mixed_bfloat16"` saves and loads back as mixed_bfloat16."""

import keras


def keep_dtype_policy(model, dtype):
    """Give `model` the policy its layers were built with. A functional keras.Model takes no `dtype`
    itself (Keras gives it the global policy), so without this `get_config` could not return the
    `dtype` that was asked for. With dtype None the model keeps the global policy, as its layers did."""
    if dtype is not None:
        model.dtype_policy = dtype


def dtype_policy_config(model):
    """The `dtype` entry of get_config: the model's policy, serialised as Keras' layers write theirs."""
    return keras.dtype_policies.serialize(model.dtype_policy)


def with_dtype_policy(config):
    """from_config's half: a copy of `config` whose serialised `dtype` is a DTypePolicy again."""
    config = dict(config)
    if isinstance(config.get("dtype"), dict):
        config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
    return config
