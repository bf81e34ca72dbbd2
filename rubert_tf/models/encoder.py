"""RuBertEncoder: the BERT encoder as a functional Keras model."""

import keras

from rubert_tf.config import RuBertConfig
from rubert_tf.layers import Dropout, PositionEmbedding, TokenEmbedding, TransformerEncoderBlock
from rubert_tf.models.dtype_policy import dtype_policy_config, keep_dtype_policy, with_dtype_policy


def as_config(config):
    """Accept a RuBertConfig, its dict, or a preset name."""
    if isinstance(config, RuBertConfig):
        return config
    if isinstance(config, dict):
        return RuBertConfig.from_dict(config)
    if isinstance(config, str):
        return RuBertConfig.from_pretrained(config)
    raise TypeError(f"config must be a RuBertConfig, a dict or a preset name, got {type(config).__name__}")


def encoder_inputs():
    """The three keras-hub-style inputs every RuBERT model takes."""
    return {
        "token_ids": keras.Input(shape=(None,), dtype="int32", name="token_ids"),
        "segment_ids": keras.Input(shape=(None,), dtype="int32", name="segment_ids"),
        "padding_mask": keras.Input(shape=(None,), dtype="int32", name="padding_mask"),
    }


# The layers an ELECTRA generator shares with its discriminator (RuBertEncoder(shared_embeddings=...)).
SHARED_EMBEDDING_LAYERS = ("token_embedding", "position_embedding", "segment_embedding", "embeddings_layer_norm")


@keras.saving.register_keras_serializable(package="rubert_tf")
class FirstToken(keras.layers.Layer):
    """[B, T, H] -> [B, H]: the [CLS] position, which BERT's pooler reads."""

    def call(self, inputs):
        return inputs[:, 0, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        # Written out: Keras' automatic config cannot serialise a DTypePolicy object given as `dtype`.
        return super().get_config()


@keras.saving.register_keras_serializable(package="rubert_tf")
class RuBertEncoder(keras.Model):
    """BERT encoder: embeddings (token + position + segment, LayerNorm, dropout), N post-LN
    transformer blocks, and the tanh pooler over [CLS].

    Inputs: dict with `token_ids`, `segment_ids`, `padding_mask` ([B, T] int32; padding_mask 1 = token).
    Outputs: dict with `sequence_output` [B, T, H] and `pooled_output` [B, H] (the latter only with
    `include_pooler=True`, the default).
    With `config.embedding_size` E != H (ELECTRA's factorised embeddings), the embeddings and their
    LayerNorm have width E and a Dense `embeddings_project` (E -> H) follows the embeddings dropout, as in
    HF's ElectraModel; such an encoder loads from Electra checkpoints and saves in HF's Electra layout.

    Example (a tiny random encoder; `RuBertEncoder.from_pretrained(path)` loads real weights):

    >>> import numpy as np
    >>> import rubert_tf as rt
    >>> config = rt.RuBertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1,
    ...                          num_attention_heads=2, intermediate_size=64)
    >>> batch = {"token_ids": np.array([[2, 10, 11, 3, 0]]), "segment_ids": np.zeros((1, 5), "int32"),
    ...          "padding_mask": np.array([[1, 1, 1, 1, 0]])}
    >>> encoder = rt.RuBertEncoder(config)
    >>> {name: tuple(value.shape) for name, value in sorted(encoder(batch).items())}
    {'pooled_output': (1, 32), 'sequence_output': (1, 5, 32)}
    >>> "encoder.layer.0.attention.self.query.weight" in encoder.hf_weight_map()  # HF names of the weights
    True
    >>> rt.RuBertEncoder(config, dtype="mixed_bfloat16").get_config()["dtype"]["config"]["name"]
    'mixed_bfloat16'
    """

    hf_electra_architecture = "ElectraModel"  # the layout save_pretrained writes for factorised embeddings
    task_name = "sentence"  # the task unit that serves it (rubert_tf.tasks.sentence)

    def __init__(self, config, include_pooler=True, shared_embeddings=None, **kwargs):
        """`shared_embeddings`: another RuBertEncoder whose token/position/segment embeddings and embeddings
        LayerNorm this one uses (the same variables), as ELECTRA's generator shares its discriminator's
        (rubert_tf.models.electra). Not part of get_config: the model that shares them rebuilds both."""
        config = as_config(config)
        initializer = keras.initializers.TruncatedNormal(stddev=config.initializer_range)
        dtype = kwargs.pop("dtype", None)

        def fresh_initializer():
            return keras.initializers.TruncatedNormal(stddev=config.initializer_range)

        inputs = encoder_inputs()
        width = config.embedding_width  # E: hidden_size, or ELECTRA's embedding_size
        if shared_embeddings is None:
            token_embedding = TokenEmbedding(
                config.vocab_size, width, embeddings_initializer=fresh_initializer(),
                name="token_embedding", dtype=dtype)
            position_embedding = PositionEmbedding(
                config.max_position_embeddings, initializer=fresh_initializer(), name="position_embedding",
                dtype=dtype)
            segment_embedding = keras.layers.Embedding(
                config.type_vocab_size, width, embeddings_initializer=fresh_initializer(),
                name="segment_embedding", dtype=dtype)
            embeddings_norm = None
        else:
            shared_config = shared_embeddings.config
            for name in ("embedding_width", "vocab_size", "max_position_embeddings", "type_vocab_size"):
                if getattr(shared_config, name) != getattr(config, name):
                    raise ValueError(f"shared_embeddings has {name}={getattr(shared_config, name)}, this "
                                     f"encoder's config {getattr(config, name)}: they must agree to share")
            token_embedding, position_embedding, segment_embedding, embeddings_norm = (
                shared_embeddings.get_layer(name) for name in SHARED_EMBEDDING_LAYERS)

        tokens = token_embedding(inputs["token_ids"])
        x = keras.layers.Add(name="embeddings_add", dtype=dtype)(
            [tokens, position_embedding(tokens), segment_embedding(inputs["segment_ids"])])
        if embeddings_norm is None:
            embeddings_norm = keras.layers.LayerNormalization(
                epsilon=config.layer_norm_eps, name="embeddings_layer_norm", dtype=dtype)
        x = embeddings_norm(x)
        x = Dropout(config.hidden_dropout_prob, name="embeddings_dropout", dtype=dtype)(x)
        if width != config.hidden_size:
            # HF ElectraModel: embeddings of width E, then a Linear E -> H before the first block.
            x = keras.layers.Dense(config.hidden_size, kernel_initializer=fresh_initializer(),
                                   name="embeddings_project", dtype=dtype)(x)

        for index in range(config.num_hidden_layers):
            x = TransformerEncoderBlock(
                num_heads=config.num_attention_heads,
                intermediate_size=config.intermediate_size,
                activation=config.hidden_act,
                dropout=config.hidden_dropout_prob,
                attention_dropout=config.attention_probs_dropout_prob,
                layer_norm_epsilon=config.layer_norm_eps,
                kernel_initializer=initializer,
                name=f"transformer_layer_{index}",
                dtype=dtype,
            )(x, padding_mask=inputs["padding_mask"])
        outputs = {"sequence_output": x}
        # BertForMaskedLM has no pooler (HF's add_pooling_layer=False); leaving it out there avoids
        # an untrained, gradient-less head.
        if include_pooler:
            outputs["pooled_output"] = keras.layers.Dense(
                config.hidden_size, activation="tanh", kernel_initializer=fresh_initializer(),
                name="pooler_dense", dtype=dtype)(FirstToken(name="first_token", dtype=dtype)(x))

        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        keep_dtype_policy(self, dtype)
        self.config = config
        self.include_pooler = include_pooler
        self.token_embedding = token_embedding

    def get_config(self):
        return {"config": self.config.to_dict(), "include_pooler": self.include_pooler, "name": self.name,
                "trainable": self.trainable, "dtype": dtype_policy_config(self)}

    @classmethod
    def from_config(cls, config):
        return cls(**with_dtype_policy(config))

    # ---- checkpoints ---------------------------------------------------------------
    def hf_weight_map(self, prefix=""):
        """HF BertModel name -> (Keras variable, transpose?) for every weight of this encoder (plus ElectraModel's
        `embeddings_project.*` when embedding_size differs from hidden_size).

        HF nn.Linear weights are [out, in]; Keras kernels are [in, out], hence the transposes.
        """
        mapping = {}

        def add(name, variable, transpose=False):
            mapping[prefix + name] = (variable, transpose)

        add("embeddings.word_embeddings.weight", self.get_layer("token_embedding").embeddings)
        add("embeddings.position_embeddings.weight", self.get_layer("position_embedding").embeddings)
        add("embeddings.token_type_embeddings.weight", self.get_layer("segment_embedding").embeddings)
        norm = self.get_layer("embeddings_layer_norm")
        add("embeddings.LayerNorm.weight", norm.gamma)
        add("embeddings.LayerNorm.bias", norm.beta)
        if self.config.factorized_embeddings:
            project = self.get_layer("embeddings_project")
            add("embeddings_project.weight", project.kernel, transpose=True)
            add("embeddings_project.bias", project.bias)
        for index in range(self.config.num_hidden_layers):
            block = self.get_layer(f"transformer_layer_{index}")
            base = f"encoder.layer.{index}."
            for hf_name, dense in (
                ("attention.self.query", block.attention.query_dense),
                ("attention.self.key", block.attention.key_dense),
                ("attention.self.value", block.attention.value_dense),
                ("attention.output.dense", block.attention.output_dense),
                ("intermediate.dense", block.intermediate_dense),
                ("output.dense", block.output_dense),
            ):
                add(base + hf_name + ".weight", dense.kernel, transpose=True)
                add(base + hf_name + ".bias", dense.bias)
            for hf_name, layer_norm in (
                ("attention.output.LayerNorm", block.attention_layer_norm),
                ("output.LayerNorm", block.output_layer_norm),
            ):
                add(base + hf_name + ".weight", layer_norm.gamma)
                add(base + hf_name + ".bias", layer_norm.beta)
        if self.include_pooler:
            pooler = self.get_layer("pooler_dense")
            add("pooler.dense.weight", pooler.kernel, transpose=True)
            add("pooler.dense.bias", pooler.bias)
        return mapping

    @classmethod
    def from_pretrained(cls, name_or_path, **kwargs):
        """Load from a HF directory, a TF1 (google-research) directory, or (online) a hub id."""
        from rubert_tf.checkpoints.loading import load_model

        return load_model(cls, name_or_path, **kwargs)

    def save_pretrained(self, directory, tokenizer=None):
        """Write the HF layout (config.json, model.safetensors, vocab.txt when a tokenizer is given): BertModel,
        or ElectraModel when the embeddings are factorised (embedding_size != hidden_size)."""
        if self.config.factorized_embeddings:
            from rubert_tf.checkpoints.electra import save_factorized

            return save_factorized(self, directory, tokenizer=tokenizer)
        from rubert_tf.checkpoints.hf import save_hf_checkpoint

        return save_hf_checkpoint(self, directory, tokenizer=tokenizer, architecture="BertModel")
