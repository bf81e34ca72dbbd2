"""RuBertForPreTraining: masked LM + sentence-order head in one graph (what `pretrain(sentence_order=True)` trains)."""

import keras

from rubert_tf.models.dtype_policy import dtype_policy_config, keep_dtype_policy, with_dtype_policy
from rubert_tf.models.encoder import FirstToken, as_config, encoder_inputs
from rubert_tf.models.masked_lm import RuBertForMaskedLM


@keras.saving.register_keras_serializable(package="rubert_tf")
class RuBertForPreTraining(keras.Model):
    """RuBertForMaskedLM (with mask_positions) + pooler + 2-way sentence-order head, in one graph.

    Outputs {"logits" [B, P, V], "sop_logits" [B, 2]}; weights named as HF's BertForPreTraining (whose
    `cls.seq_relationship` we use for ALBERT's sentence order instead of next sentence).

    Example (tiny and random):

    >>> import numpy as np
    >>> import rubert_tf as rt
    >>> from rubert_tf.models.pretraining import RuBertForPreTraining
    >>> config = rt.RuBertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1,
    ...                          num_attention_heads=2, intermediate_size=64)
    >>> batch = {"token_ids": np.array([[2, 10, 3, 11, 3]]), "segment_ids": np.array([[0, 0, 0, 1, 1]]),
    ...          "padding_mask": np.ones((1, 5), "int32"), "mask_positions": np.array([[1, 3]])}
    >>> outputs = RuBertForPreTraining(config)(batch)
    >>> tuple(outputs["logits"].shape), tuple(outputs["sop_logits"].shape)
    ((1, 2, 100), (1, 2))
    """

    def __init__(self, config, **kwargs):
        config = as_config(config)
        dtype = kwargs.pop("dtype", None)
        mlm = RuBertForMaskedLM(config, with_mask_positions=True, name="masked_lm", dtype=dtype)
        inputs = encoder_inputs()
        sequence = mlm.encoder(inputs)["sequence_output"]
        inputs = {**inputs, "mask_positions": keras.Input(shape=(None,), dtype="int32", name="mask_positions")}
        # The MLM head's own layers on the same encoder output: one encoder pass feeds both heads.
        gathered = mlm.get_layer("gather_mask_positions")(sequence, inputs["mask_positions"])
        hidden = mlm.get_layer("mlm_transform")(gathered)
        logits = mlm.get_layer("mlm_bias")(mlm.encoder.token_embedding(hidden, reverse=True))

        def initializer():
            return keras.initializers.TruncatedNormal(stddev=config.initializer_range)

        first = FirstToken(name="first_token", dtype=dtype)(sequence)
        pooled = keras.layers.Dense(config.hidden_size, activation="tanh", kernel_initializer=initializer(),
                                    name="pooler_dense", dtype=dtype)(first)
        sop = keras.layers.Dense(2, kernel_initializer=initializer(), name="sop_classifier", dtype="float32")(pooled)
        super().__init__(inputs=inputs, outputs={"logits": logits, "sop_logits": sop}, **kwargs)
        keep_dtype_policy(self, dtype)
        self.config = config
        self.masked_lm = mlm

    def get_config(self):
        return {"config": self.config.to_dict(), "name": self.name, "trainable": self.trainable,
                "dtype": dtype_policy_config(self)}

    @classmethod
    def from_config(cls, config):
        return cls(**with_dtype_policy(config))

    def hf_weight_map(self, prefix=""):
        mapping = dict(self.masked_lm.hf_weight_map(prefix))
        pooler, head = self.get_layer("pooler_dense"), self.get_layer("sop_classifier")
        mapping[prefix + "bert.pooler.dense.weight"] = (pooler.kernel, True)
        mapping[prefix + "bert.pooler.dense.bias"] = (pooler.bias, False)
        mapping[prefix + "cls.seq_relationship.weight"] = (head.kernel, True)
        mapping[prefix + "cls.seq_relationship.bias"] = (head.bias, False)
        return mapping

    def save_pretrained(self, directory, tokenizer=None):
        from rubert_tf.checkpoints.hf import save_hf_checkpoint

        return save_hf_checkpoint(self, directory, tokenizer=tokenizer, architecture="BertForPreTraining")
