"""ELECTRA's replaced-token detection (Clark et al., 2020): a small masked-LM generator fills the masked
positions with sampled tokens, and the discriminator (a RuBertEncoder) tells for every token whether it
was replaced. Weights named as HF's ElectraForPreTraining (discriminator) and ElectraForMaskedLM
(generator); the two share one set of token/position/segment embeddings and embeddings LayerNorm."""

import keras
import tensorflow as tf
from keras import ops

# generator_config_for lives with the config (checkpoints use it too); re-exported here.
from rubert_tf.config import IGNORE_LABEL, RuBertConfig, generator_config_for  # noqa: F401
from rubert_tf.layers import get_activation
from rubert_tf.models.dtype_policy import dtype_policy_config, keep_dtype_policy, with_dtype_policy
from rubert_tf.models.encoder import RuBertEncoder, as_config, encoder_inputs
from rubert_tf.models.masked_lm import GatherPositions, LogitsBias
from rubert_tf.training.metrics import MaskedAccuracy, MaskedCrossEntropy

# Seed of the samples drawn at inference (training=False): the same batch gets the same replacements, and
# evaluating draws nothing from the training sampler's state (so validation cannot shift a training run).
INFERENCE_SEED = 1234


def scatter_at_positions(token_ids, positions, values, valid):
    """token_ids [B, T] with values [B, P] written at positions [B, P] where `valid` [B, P] is true."""
    token_ids = tf.cast(token_ids, tf.int32)
    hits = tf.one_hot(tf.cast(positions, tf.int32), tf.shape(token_ids)[1], dtype=tf.int32)
    hits *= tf.cast(valid, tf.int32)[:, :, tf.newaxis]  # [B, P, T]: one 1 per valid position
    placed = tf.reduce_sum(hits * tf.cast(values, tf.int32)[:, :, tf.newaxis], axis=1)
    return tf.where(tf.reduce_sum(hits, axis=1) > 0, placed, token_ids)


def replaced_token_labels(token_ids, mask_positions, mask_labels, corrupted_ids):
    """1 where the discriminator's input differs from the original text, else 0 (int32 [B, T]).

    The originals are `token_ids` (the masked batch) with `mask_labels` (the original ids at
    `mask_positions`; -100 filler) put back: a sampled token equal to the original counts as original."""
    mask_labels = tf.cast(mask_labels, tf.int32)
    originals = scatter_at_positions(token_ids, mask_positions, mask_labels, mask_labels != IGNORE_LABEL)
    return tf.cast(tf.cast(corrupted_ids, tf.int32) != originals, tf.int32)


def _fresh(initializer):
    # A new instance per weight: one unseeded Keras initializer called twice returns the same values.
    return initializer.__class__.from_config(initializer.get_config())


@keras.saving.register_keras_serializable(package="rubert_tf")
class ElectraDiscriminatorHead(keras.layers.Layer):
    """HF `discriminator_predictions`: dense [H, H] -> activation -> dense_prediction [1, H]: one float32
    logit per token ("replaced")."""

    def __init__(self, activation="gelu", kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.activation = activation
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self._activation_fn = get_activation(activation)
        self.dense = self.dense_prediction = None

    def build(self, inputs_shape):
        self.dense = keras.layers.Dense(inputs_shape[-1], name="dense", dtype=self.dtype_policy,
                                        kernel_initializer=_fresh(self.kernel_initializer))
        self.dense.build(inputs_shape)
        # float32: the logit feeds a sigmoid cross-entropy, stable under mixed precision.
        self.dense_prediction = keras.layers.Dense(1, name="dense_prediction", dtype="float32",
                                                   kernel_initializer=_fresh(self.kernel_initializer))
        self.dense_prediction.build(inputs_shape)
        super().build(inputs_shape)

    def call(self, inputs):
        return ops.squeeze(self.dense_prediction(self._activation_fn(self.dense(inputs))), axis=-1)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape[:-1])

    def get_config(self):
        return {**super().get_config(), "activation": self.activation,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


@keras.saving.register_keras_serializable(package="rubert_tf")
class ElectraGeneratorHead(keras.layers.Layer):
    """HF `generator_predictions`: dense (generator hidden -> embedding_size) -> GELU -> LayerNorm [E], before
    the decoder tied to the word embeddings. (HF hard-codes "gelu" here, whatever hidden_act says.)"""

    def __init__(self, embedding_size, activation="gelu", layer_norm_epsilon=1e-12,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.embedding_size = int(embedding_size)
        self.activation = activation
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self._activation_fn = get_activation(activation)
        self.dense = keras.layers.Dense(self.embedding_size, name="dense", dtype=self.dtype_policy,
                                        kernel_initializer=self.kernel_initializer)
        self.layer_norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="layer_norm",
                                                          dtype=self.dtype_policy)

    def build(self, inputs_shape):
        self.dense.build(inputs_shape)
        self.layer_norm.build((*inputs_shape[:-1], self.embedding_size))
        super().build(inputs_shape)

    def call(self, inputs):
        return self.layer_norm(self._activation_fn(self.dense(inputs)))

    def compute_output_shape(self, inputs_shape):
        return (*inputs_shape[:-1], self.embedding_size)

    def get_config(self):
        return {**super().get_config(), "embedding_size": self.embedding_size, "activation": self.activation,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


def replica_seed(seed):
    """A stateless-op seed (int32 [2]) from a SeedGenerator's `seed`, different on every replica of a
    tf.distribute strategy: the generator's state is mirrored, so without the replica id every replica would
    draw the same noise (replica 0, and any run without a strategy, keeps the seed as it is)."""
    # As Keras' own categorical: its int64 state folded into int32 (stateless ops want int32 under XLA).
    seed = tf.cast(tf.math.floormod(tf.cast(seed, tf.int64), tf.int32.max - 1), tf.int32)
    context = tf.distribute.get_replica_context()
    replica = 0 if context is None else context.replica_id_in_sync_group
    return seed + tf.stack([tf.constant(0, tf.int32), tf.cast(replica, tf.int32)])


@keras.saving.register_keras_serializable(package="rubert_tf")
class SampleReplacements(keras.layers.Layer):
    """(generator logits [B, P, V], token_ids [B, T], mask_positions [B, P]) -> int32 [B, T]: token_ids
    with one token drawn from softmax(logits) written at every mask position. Position 0 is filler (it
    holds [CLS], which the masker never selects), so it is left as it is.

    Training draws from the layer's SeedGenerator: seeded by keras.utils.set_random_seed, and its state
    travels with the training backups (rubert_tf.training.callbacks saves every SeedGenerator), so a
    resumed run draws what the uninterrupted one would. Inference uses INFERENCE_SEED. No gradient flows
    through the draw (integer output)."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, logits, token_ids, mask_positions, training=False):
        logits = ops.cast(ops.stop_gradient(logits), "float32")
        flat = ops.reshape(logits, (-1, ops.shape(logits)[-1]))
        if training:
            seed = replica_seed(self.seed_generator.next())
            drawn = tf.random.stateless_categorical(flat, 1, seed=seed, dtype=tf.int32)
        else:
            drawn = keras.random.categorical(flat, 1, dtype="int32", seed=INFERENCE_SEED)
        samples = ops.reshape(drawn, ops.shape(mask_positions))
        return scatter_at_positions(token_ids, mask_positions, samples, ops.cast(mask_positions, "int32") > 0)

    def compute_output_shape(self, logits_shape, token_ids_shape, mask_positions_shape):
        return tuple(token_ids_shape)

    def compute_output_spec(self, logits, token_ids, mask_positions, training=False):
        return keras.KerasTensor(token_ids.shape, dtype="int32")

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


def _replica_share(loss):
    # Keras' compiled losses divide by the replicas (gradients are summed over them); ours must too.
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / replicas if replicas > 1 else loss


@keras.saving.register_keras_serializable(package="rubert_tf")
class RuBertForReplacedTokenDetection(keras.Model):
    """ELECTRA pretraining in one graph: generator MLM at `mask_positions`, sampled replacements, and the
    discriminator's per-token "replaced" logit. Trains with plain `compile(optimizer=...)` + `fit` on the
    masked pretraining batches (rubert_tf.data.pretraining with max_predictions): the loss is the
    generator's MLM cross-entropy + rtd_weight x the discriminator's binary cross-entropy over all real
    tokens; fit/evaluate report mlm_loss, mlm_accuracy, rtd_loss, rtd_accuracy (all real tokens) and
    rtd_recall (share of the replaced tokens detected), rtd_auc (ROC AUC of the logits, replaced vs original).

    Inputs: token_ids, segment_ids, padding_mask [B, T], mask_positions [B, P] (0 = filler).
    Outputs: `logits` [B, P, V] (generator, float32), `rtd_logits` [B, T] (discriminator, float32),
    `corrupted_ids` [B, T] (the discriminator's input).

    `discriminator` is a RuBertEncoder(config, include_pooler=False): what fine-tuning loads from
    save_pretrained's output (HF ElectraForPreTraining; the generator goes to `generator/` as
    ElectraForMaskedLM). `generator_config`: default generator_config_for(config).

    Example (tiny and random):

    >>> import numpy as np
    >>> import rubert_tf as rt
    >>> from rubert_tf.models.electra import RuBertForReplacedTokenDetection
    >>> config = rt.RuBertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1,
    ...                          num_attention_heads=4, intermediate_size=64)
    >>> model = RuBertForReplacedTokenDetection(config)
    >>> model.generator_config.hidden_size, model.generator_config.num_attention_heads
    (8, 1)
    >>> batch = {"token_ids": np.array([[2, 4, 11, 4, 3]]), "segment_ids": np.zeros((1, 5), "int32"),
    ...          "padding_mask": np.ones((1, 5), "int32"), "mask_positions": np.array([[1, 3, 0]])}
    >>> outputs = model(batch)
    >>> {name: tuple(value.shape) for name, value in sorted(outputs.items())}
    {'corrupted_ids': (1, 5), 'logits': (1, 3, 100), 'rtd_logits': (1, 5)}
    >>> outputs["corrupted_ids"].numpy()[0, [0, 2, 4]].tolist()  # only the mask positions are replaced
    [2, 11, 3]
    >>> "discriminator_predictions.dense_prediction.weight" in model.hf_weight_map()
    True
    """

    def __init__(self, config, generator_config=None, rtd_weight=50.0, seed=None, **kwargs):
        config = as_config(config)
        generator_config = generator_config_for(config) if generator_config is None else as_config(generator_config)
        dtype = kwargs.pop("dtype", None)
        discriminator = RuBertEncoder(config, include_pooler=False, name="discriminator", dtype=dtype)
        generator = RuBertEncoder(generator_config, include_pooler=False, shared_embeddings=discriminator,
                                  name="generator", dtype=dtype)

        def initializer():
            return keras.initializers.TruncatedNormal(stddev=config.initializer_range)

        inputs = {**encoder_inputs(), "mask_positions": keras.Input(shape=(None,), dtype="int32",
                                                                    name="mask_positions")}
        body = {key: inputs[key] for key in ("token_ids", "segment_ids", "padding_mask")}
        hidden = generator(body)["sequence_output"]
        hidden = GatherPositions(name="gather_mask_positions", dtype=dtype)(hidden, inputs["mask_positions"])
        hidden = ElectraGeneratorHead(config.embedding_width, activation="gelu",
                                      layer_norm_epsilon=generator_config.layer_norm_eps,
                                      kernel_initializer=initializer(), name="generator_predictions",
                                      dtype=dtype)(hidden)
        # generator_lm_head: the word embeddings (shared with the discriminator) in reverse, + its own bias.
        logits = LogitsBias(name="generator_lm_head")(discriminator.token_embedding(hidden, reverse=True))
        corrupted = SampleReplacements(seed=seed, name="sample_replacements", dtype=dtype)(
            logits, inputs["token_ids"], inputs["mask_positions"])
        sequence = discriminator({**body, "token_ids": corrupted})["sequence_output"]
        rtd_logits = ElectraDiscriminatorHead(activation=config.hidden_act, kernel_initializer=initializer(),
                                              name="discriminator_predictions", dtype=dtype)(sequence)
        super().__init__(inputs=inputs, outputs={"logits": logits, "rtd_logits": rtd_logits,
                                                 "corrupted_ids": corrupted}, **kwargs)
        keep_dtype_policy(self, dtype)
        self.config, self.generator_config = config, generator_config
        self.discriminator, self.generator = discriminator, generator
        self.rtd_weight = float(rtd_weight)
        self.seed = seed
        self.mlm_loss = MaskedCrossEntropy(name="mlm_loss")
        self.mlm_accuracy = MaskedAccuracy(name="mlm_accuracy")
        self.rtd_loss = keras.metrics.Mean(name="rtd_loss")
        self.rtd_accuracy = keras.metrics.Mean(name="rtd_accuracy")
        self.rtd_recall = keras.metrics.Mean(name="rtd_recall")
        # Ranking quality, whatever the threshold: early in training every logit is < 0 (recall ~0, accuracy =
        # the share of original tokens) while replaced tokens already score higher than original ones.
        self.rtd_auc = keras.metrics.AUC(num_thresholds=500, from_logits=True, name="rtd_auc")

    def get_config(self):
        return {"config": self.config.to_dict(), "generator_config": self.generator_config.to_dict(),
                "rtd_weight": self.rtd_weight, "seed": self.seed, "name": self.name, "trainable": self.trainable,
                "dtype": dtype_policy_config(self)}

    @classmethod
    def from_config(cls, config):
        return cls(**with_dtype_policy(config))

    # ---- training -------------------------------------------------------------------
    def loss_terms(self, x, y, y_pred):
        """{"mlm": mean CE over the predicted positions, "rtd": mean BCE over the real tokens, "bce": [B, T],
        "replaced": int32 [B, T] labels, "real": float32 [B, T]} (float32 whatever the dtype policy)."""
        labels = tf.cast(y["logits"], tf.int32)
        predicted = tf.cast(labels != IGNORE_LABEL, tf.float32)
        xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.maximum(labels, 0),
                                                              logits=tf.cast(y_pred["logits"], tf.float32))
        mlm = tf.math.divide_no_nan(tf.reduce_sum(xent * predicted), tf.reduce_sum(predicted))
        replaced = replaced_token_labels(x["token_ids"], x["mask_positions"], labels, y_pred["corrupted_ids"])
        real = tf.cast(x["padding_mask"], tf.float32)
        bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(replaced, tf.float32),
                                                      logits=tf.cast(y_pred["rtd_logits"], tf.float32))
        rtd = tf.math.divide_no_nan(tf.reduce_sum(bce * real), tf.reduce_sum(real))
        return {"mlm": mlm, "rtd": rtd, "bce": bce, "replaced": replaced, "real": real}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # The RTD labels come from the model's own samples, so the loss is built here, not in compile().
        terms = self.loss_terms(x, y, y_pred)
        loss = terms["mlm"] + self.rtd_weight * terms["rtd"]
        for extra in self.losses:
            loss += tf.cast(tf.reduce_sum(extra), tf.float32)
        return _replica_share(loss)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        terms = self.loss_terms(x, y, y_pred)
        self.mlm_loss.update_state(y["logits"], y_pred["logits"])
        self.mlm_accuracy.update_state(y["logits"], y_pred["logits"])
        detected = tf.cast(tf.cast(y_pred["rtd_logits"], tf.float32) > 0, tf.int32)
        self.rtd_loss.update_state(terms["bce"], sample_weight=terms["real"])
        self.rtd_accuracy.update_state(tf.cast(detected == terms["replaced"], tf.float32), sample_weight=terms["real"])
        self.rtd_recall.update_state(tf.cast(detected, tf.float32),
                                     sample_weight=terms["real"] * tf.cast(terms["replaced"], tf.float32))
        self.rtd_auc.update_state(tf.reshape(terms["replaced"], [-1]),
                                  tf.reshape(tf.cast(y_pred["rtd_logits"], tf.float32), [-1]),
                                  sample_weight=tf.reshape(terms["real"], [-1]))
        return super().compute_metrics(x, y, y_pred, sample_weight)

    # ---- checkpoints -------------------------------------------------------------------
    def discriminator_hf_weight_map(self, prefix=""):
        """HF ElectraForPreTraining names: `electra.*` (no pooler) + `discriminator_predictions.*`."""
        mapping = dict(self.discriminator.hf_weight_map(prefix + "electra."))
        head = self.get_layer("discriminator_predictions")
        for name, dense in (("dense", head.dense), ("dense_prediction", head.dense_prediction)):
            mapping[f"{prefix}discriminator_predictions.{name}.weight"] = (dense.kernel, True)
            mapping[f"{prefix}discriminator_predictions.{name}.bias"] = (dense.bias, False)
        return mapping

    def generator_hf_weight_map(self, prefix=""):
        """HF ElectraForMaskedLM names: `electra.*` (the shared embeddings included) + `generator_predictions.*`
        + `generator_lm_head.bias` (its weight is tied to the word embeddings, and not stored, as HF does)."""
        mapping = dict(self.generator.hf_weight_map(prefix + "electra."))
        head = self.get_layer("generator_predictions")
        mapping[prefix + "generator_predictions.dense.weight"] = (head.dense.kernel, True)
        mapping[prefix + "generator_predictions.dense.bias"] = (head.dense.bias, False)
        mapping[prefix + "generator_predictions.LayerNorm.weight"] = (head.layer_norm.gamma, False)
        mapping[prefix + "generator_predictions.LayerNorm.bias"] = (head.layer_norm.beta, False)
        mapping[prefix + "generator_lm_head.bias"] = (self.get_layer("generator_lm_head").bias, False)
        return mapping

    def hf_weight_map(self, prefix=""):
        """The discriminator's names (save_pretrained's model.safetensors) and the generator's under
        "generator/" (its generator/model.safetensors)."""
        return {**self.discriminator_hf_weight_map(prefix), **self.generator_hf_weight_map(prefix + "generator/")}

    @classmethod
    def from_pretrained(cls, name_or_path, generator=None, generator_hidden_size=None, **kwargs):
        """Load what save_pretrained wrote: the discriminator from `name_or_path`, the generator from
        `generator` (default: its generator/ folder). Without a generator checkpoint (a released
        discriminator, or a BERT checkpoint to continue as one) the generator starts random (logged)."""
        from rubert_tf.checkpoints.electra import load_replaced_token_detection

        return load_replaced_token_detection(cls, name_or_path, generator=generator,
                                             generator_hidden_size=generator_hidden_size, **kwargs)

    def save_pretrained(self, directory, tokenizer=None):
        """HF Electra layout: ElectraForPreTraining in `directory`, ElectraForMaskedLM in `directory/generator`."""
        from rubert_tf.checkpoints.electra import save_replaced_token_detection

        return save_replaced_token_detection(self, directory, tokenizer=tokenizer)
