"""RuBertSeq2Seq: an encoder-decoder built with the functional API from our own layers.

Two flavours (see Seq2SeqConfig): bert2bert (BERT encoder + BERT decoder with cross-attention,
HF EncoderDecoderModel layout, warm-started from RuBERT as in Rothe et al. 2020) and the classic
Transformer (sinusoidal positions, shared embeddings).

Inputs (keras-hub BART names), int32 [B, T]: `encoder_token_ids`, `encoder_padding_mask`,
`decoder_token_ids` ([CLS] y1 .. yn), `decoder_padding_mask`. Output: logits [B, T_dec, vocab]
(float32), trained against labels y1 .. yn [SEP] with -100 on padding (`default_loss()`).

    s2s = RuBertSeq2Seq.from_pretrained("path/to/rubert")            # bert2bert warm start
    s2s.compile(optimizer="adam", loss=s2s.default_loss(label_smoothing=0.1)); s2s.fit(dataset)
    s2s.generate(["Привет, мир!"], num_beams=4, max_length=64)        # -> ["..."]
"""

import math
import os

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from rubert_tf.layers import (Dropout, PositionEmbedding, SinusoidalPositionalEncoding, TokenEmbedding,
                              TransformerDecoderBlock, TransformerEncoderBlock)
from rubert_tf.models.dtype_policy import dtype_policy_config, keep_dtype_policy, with_dtype_policy
from rubert_tf.models.encoder import RuBertEncoder
from rubert_tf.models.generation import GenerationConfig, beam_search, greedy_search
from rubert_tf.models.masked_lm import LogitsBias, MaskedLMTransform
from rubert_tf.models.seq2seq_loss import MaskedSparseCrossEntropy
from rubert_tf.seq2seq_config import Seq2SeqConfig

INPUT_NAMES = ("encoder_token_ids", "encoder_padding_mask", "decoder_token_ids", "decoder_padding_mask")


def as_seq2seq_config(config):
    if isinstance(config, Seq2SeqConfig):
        return config
    if isinstance(config, dict):
        return Seq2SeqConfig.from_dict(config)
    raise TypeError(f"config must be a Seq2SeqConfig or its dict, got {type(config).__name__}")


def seq2seq_inputs():
    return {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in INPUT_NAMES}


class _Bert2BertParts:
    """The layers of bert2bert, and how to run them (shared by training and step decoding)."""

    def __init__(self, config, dtype):
        enc, dec = config.encoder, config.decoder

        def init():
            return keras.initializers.TruncatedNormal(stddev=dec.initializer_range)

        self.encoder = RuBertEncoder(enc, include_pooler=False, name="encoder", dtype=dtype)
        # EncoderDecoderModel keeps the encoder's pooler but never uses it; we keep its weights (frozen,
        # outside the graph) only so checkpoints round-trip unchanged.
        self.pooler = keras.layers.Dense(enc.hidden_size, activation="tanh", name="encoder_pooler",
                                         trainable=False, dtype=dtype)
        self.pooler.build((None, enc.hidden_size))
        self.token_embedding = TokenEmbedding(dec.vocab_size, dec.hidden_size, embeddings_initializer=init(),
                                              name="decoder_token_embedding", dtype=dtype)
        self.position_embedding = PositionEmbedding(dec.max_position_embeddings, initializer=init(),
                                                    name="decoder_position_embedding", dtype=dtype)
        self.segment_embedding = keras.layers.Embedding(dec.type_vocab_size, dec.hidden_size,
                                                        embeddings_initializer=init(),
                                                        name="decoder_segment_embedding", dtype=dtype)
        self.add = keras.layers.Add(name="decoder_embeddings_add", dtype=dtype)
        self.layer_norm = keras.layers.LayerNormalization(epsilon=dec.layer_norm_eps,
                                                          name="decoder_embeddings_layer_norm", dtype=dtype)
        self.dropout = Dropout(dec.hidden_dropout_prob, name="decoder_embeddings_dropout", dtype=dtype)
        self.blocks = [TransformerDecoderBlock(
            num_heads=dec.num_attention_heads, intermediate_size=dec.intermediate_size, activation=dec.hidden_act,
            dropout=dec.hidden_dropout_prob, attention_dropout=dec.attention_probs_dropout_prob,
            layer_norm_epsilon=dec.layer_norm_eps, kernel_initializer=init(), name=f"decoder_layer_{index}",
            dtype=dtype) for index in range(dec.num_hidden_layers)]
        self.transform = MaskedLMTransform(activation=dec.hidden_act, layer_norm_epsilon=dec.layer_norm_eps,
                                           kernel_initializer=init(), name="decoder_mlm_transform", dtype=dtype)
        self.bias = LogitsBias(name="decoder_mlm_bias")
        self.max_positions = dec.max_position_embeddings

    def encode(self, token_ids, padding_mask, training=None):
        # HF's EncoderDecoderModel gives the encoder no token_type_ids: segment 0 everywhere.
        inputs = {"token_ids": token_ids, "segment_ids": ops.zeros_like(token_ids), "padding_mask": padding_mask}
        return self.encoder(inputs, training=training)["sequence_output"]

    def embed_decoder(self, token_ids, start_index=0, training=None):
        tokens = self.token_embedding(token_ids)
        x = self.add([tokens, self.position_embedding(tokens, start_index=start_index),
                      self.segment_embedding(ops.zeros_like(token_ids))])
        return self.dropout(self.layer_norm(x), training=training)

    def logits(self, hidden):
        return self.bias(self.token_embedding(self.transform(hidden), reverse=True))


@keras.saving.register_keras_serializable(package="rubert_tf")
class ScaleEmbedding(keras.layers.Layer):
    """x * sqrt(d): the classic Transformer scales embeddings before adding the positions."""

    def call(self, inputs):
        return inputs * ops.cast(math.sqrt(inputs.shape[-1]), inputs.dtype)

    def get_config(self):
        # Written out: Keras' automatic config cannot serialise a DTypePolicy object given as `dtype`.
        return super().get_config()


class _TransformerParts:
    """The classic Transformer's layers: one embedding for source, target and output projection."""

    def __init__(self, config, dtype):
        enc, dec = config.encoder, config.decoder
        width = enc.hidden_size
        self.token_embedding = TokenEmbedding(
            enc.vocab_size, width, embeddings_initializer=keras.initializers.RandomNormal(stddev=width ** -0.5),
            name="token_embedding", dtype=dtype)
        self.scale = ScaleEmbedding(name="embedding_scale", dtype=dtype)
        self.positions = SinusoidalPositionalEncoding(name="positional_encoding", dtype=dtype)
        self.encoder_add = keras.layers.Add(name="encoder_embeddings_add", dtype=dtype)
        self.decoder_add = keras.layers.Add(name="decoder_embeddings_add", dtype=dtype)
        self.encoder_dropout = Dropout(enc.hidden_dropout_prob, name="encoder_dropout", dtype=dtype)
        self.dropout = Dropout(dec.hidden_dropout_prob, name="decoder_dropout", dtype=dtype)

        def block_args(c):
            return dict(num_heads=c.num_attention_heads, intermediate_size=c.intermediate_size,
                        activation=c.hidden_act, dropout=c.hidden_dropout_prob,
                        attention_dropout=c.attention_probs_dropout_prob, layer_norm_epsilon=c.layer_norm_eps,
                        dtype=dtype)

        self.encoder_blocks = [TransformerEncoderBlock(**block_args(enc), name=f"encoder_layer_{index}")
                               for index in range(enc.num_hidden_layers)]
        self.blocks = [TransformerDecoderBlock(**block_args(dec), name=f"decoder_layer_{index}")
                       for index in range(dec.num_hidden_layers)]
        self.bias = LogitsBias(name="output_bias")
        self.max_positions = None  # sinusoids have no table to run out of

    def encode(self, token_ids, padding_mask, training=None):
        x = self.scale(self.token_embedding(token_ids))
        x = self.encoder_dropout(self.encoder_add([x, self.positions(x)]), training=training)
        for block in self.encoder_blocks:
            x = block(x, padding_mask=padding_mask, training=training)
        return x

    def embed_decoder(self, token_ids, start_index=0, training=None):
        x = self.scale(self.token_embedding(token_ids))
        return self.dropout(self.decoder_add([x, self.positions(x, start_index=start_index)]), training=training)

    def logits(self, hidden):
        return self.bias(self.token_embedding(hidden, reverse=True))


class _CompiledFunctions:
    """The tf.functions of `generate`, one per GenerationConfig. A plain object, so neither Keras nor
    SavedModel tries to track (and save) them."""

    def __init__(self):
        self.functions = {}


@keras.saving.register_keras_serializable(package="rubert_tf")
class RuBertSeq2Seq(keras.Model):
    """Encoder-decoder over RuBERT's vocabulary; see the module docstring for inputs and outputs.

    Example (a tiny random classic Transformer; `from_pretrained(path)` warm-starts bert2bert from RuBERT):

    >>> import numpy as np
    >>> import rubert_tf as rt
    >>> model = rt.RuBertSeq2Seq.from_scratch(vocab_size=100, hidden_size=32, num_layers=1, num_heads=2,
    ...                                       intermediate_size=64, max_length=64, decoder_start_token_id=2,
    ...                                       eos_token_id=3, pad_token_id=0)
    >>> batch = {"encoder_token_ids": np.array([[2, 10, 11, 3]]), "encoder_padding_mask": np.ones((1, 4), "int32"),
    ...          "decoder_token_ids": np.array([[2, 20, 21]]), "decoder_padding_mask": np.ones((1, 3), "int32")}
    >>> tuple(model(batch).shape)  # next-token logits at each decoder position
    (1, 3, 100)
    >>> ids = model.generate_ids([[2, 10, 11, 3]], max_length=5)  # greedy: starts with [CLS] (id 2)
    >>> ids[0][0], len(ids[0]) <= 5
    (2, True)
    """
    task_name = "seq2seq"  # the task unit that serves it (rubert_tf.tasks.seq2seq)

    def __init__(self, config, **kwargs):
        config = as_seq2seq_config(config)
        dtype = kwargs.pop("dtype", None)
        parts = (_Bert2BertParts if config.architecture == "bert2bert" else _TransformerParts)(config, dtype)
        inputs = seq2seq_inputs()
        encoder_sequence = parts.encode(inputs["encoder_token_ids"], inputs["encoder_padding_mask"])
        hidden = parts.embed_decoder(inputs["decoder_token_ids"])
        for block in parts.blocks:
            hidden = block(hidden, encoder_sequence, decoder_padding_mask=inputs["decoder_padding_mask"],
                           encoder_padding_mask=inputs["encoder_padding_mask"])
        logits = parts.logits(hidden)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        keep_dtype_policy(self, dtype)
        self.config = config
        self.parts = parts
        if config.architecture == "bert2bert":
            self.encoder_pooler = parts.pooler  # tracked, so saved; not part of the graph
        self.tokenizer = None
        self._compiled = _CompiledFunctions()

    def get_config(self):
        return {"config": self.config.to_dict(), "name": self.name, "trainable": self.trainable,
                "dtype": dtype_policy_config(self)}

    @classmethod
    def from_config(cls, config):
        return cls(**with_dtype_policy(config))

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def from_scratch(cls, vocab_size=None, tokenizer=None, hidden_size=512, num_layers=6, num_decoder_layers=None,
                     num_heads=8, intermediate_size=2048, dropout=0.1, activation="relu", layer_norm_eps=1e-6,
                     max_length=1024, decoder_start_token_id=None, eos_token_id=None, pad_token_id=None, **kwargs):
        """The classic Transformer (defaults: the paper's base model). `vocab_size` defaults to the
        tokenizer's; token ids default to its [CLS] / [SEP] / [PAD]."""
        from rubert_tf.config import RuBertConfig

        if vocab_size is None:
            if tokenizer is None:
                raise ValueError("from_scratch needs `vocab_size` or a `tokenizer`")
            vocab_size = tokenizer.vocab_size

        def half(layers):
            return RuBertConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=layers,
                                num_attention_heads=num_heads, intermediate_size=intermediate_size,
                                hidden_act=activation, hidden_dropout_prob=dropout,
                                attention_probs_dropout_prob=dropout, layer_norm_eps=layer_norm_eps,
                                max_position_embeddings=max_length)

        config = Seq2SeqConfig(encoder=half(num_layers), decoder=half(num_decoder_layers or num_layers),
                               architecture="transformer", decoder_start_token_id=decoder_start_token_id,
                               eos_token_id=eos_token_id, pad_token_id=pad_token_id)
        if tokenizer is not None:
            config = config.with_tokenizer(tokenizer)
        model = cls(config, **kwargs)
        model.tokenizer = tokenizer
        return model

    @classmethod
    def from_pretrained(cls, encoder_path, decoder_path=None, tokenizer=True, **kwargs):
        """An HF EncoderDecoderModel directory (bert2bert), or a warm start from RuBERT checkpoints:
        encoder and decoder from `encoder_path` (the decoder from `decoder_path` when given), new
        cross-attention, decoder output tied to its word embeddings. The tokenizer (vocab.txt beside
        the weights) is loaded when `tokenizer` is true."""
        from rubert_tf import hub
        from rubert_tf.checkpoints import seq2seq as checkpoint

        encoder_dir = hub.resolve(encoder_path)
        loaded = load_tokenizer_if_present(encoder_dir) if tokenizer else None
        return checkpoint.from_pretrained(cls, encoder_dir, decoder_path, tokenizer=loaded, **kwargs)

    def save_pretrained(self, directory, tokenizer=None):
        """HF EncoderDecoderModel layout (config.json, model.safetensors, vocab.txt), bert2bert only."""
        from rubert_tf.checkpoints import seq2seq as checkpoint

        return checkpoint.save_pretrained(self, directory, tokenizer=tokenizer or self.tokenizer)

    def hf_weight_map(self, prefix=""):
        from rubert_tf.checkpoints import seq2seq as checkpoint

        return checkpoint.hf_weight_map(self, prefix)

    # ---- training --------------------------------------------------------------------------
    @staticmethod
    def default_loss(label_smoothing=0.0):
        """Sparse cross-entropy over tokens, -100 labels ignored, optional label smoothing."""
        return MaskedSparseCrossEntropy(label_smoothing=label_smoothing)

    # ---- step-by-step decoding -------------------------------------------------------------
    def _token_ids(self):
        return self.config.require_token_ids()

    def _decoder_state(self, encoder_sequence, encoder_padding_mask, max_length, use_cache):
        """(context, cache): what every step reads, and the self-attention caches it updates."""
        context = {"encoder_sequence": encoder_sequence, "encoder_padding_mask": encoder_padding_mask}
        if not use_cache:
            return context, ()
        context["cross_caches"] = [block.cross_attention.compute_cache(encoder_sequence)
                                   for block in self.parts.blocks]
        rows = tf.shape(encoder_sequence)[0]
        caches = tuple(tf.zeros([rows, 2, max_length, block.num_heads, block.self_attention.head_size],
                                block.compute_dtype) for block in self.parts.blocks)
        return context, caches

    def _next_logits_fn(self, context, use_cache):
        parts = self.parts

        def with_cache(caches, sequences, index):
            # One token in: its keys/values go into the caches at `index`.
            tokens = tf.gather(sequences, [index], axis=1)
            hidden = parts.embed_decoder(tokens, start_index=index, training=False)
            new_caches = []
            for block, cache, cross in zip(parts.blocks, caches, context["cross_caches"]):
                hidden, cache, _ = block(hidden, encoder_padding_mask=context["encoder_padding_mask"],
                                         self_attention_cache=cache, self_attention_cache_update_index=index,
                                         cross_attention_cache=cross, training=False)
                new_caches.append(cache)
            return tf.cast(parts.logits(hidden)[:, 0], tf.float32), tuple(new_caches)

        def without_cache(caches, sequences, index):
            # The whole prefix again, every step: what the cache saves.
            hidden = parts.embed_decoder(sequences[:, :index + 1], training=False)
            for block in parts.blocks:
                hidden = block(hidden, context["encoder_sequence"],
                               encoder_padding_mask=context["encoder_padding_mask"], training=False)
            return tf.cast(parts.logits(hidden[:, -1:])[:, 0], tf.float32), caches

        return with_cache if use_cache else without_cache

    def generate_graph(self, encoder_token_ids, encoder_padding_mask, config, seed=None):
        """Pure-TF generation (no Python between steps): token ids [B, T] -> (sequences [B, L], lengths [B]).
        Sequences start with the decoder start token; past `lengths` they hold pad. Usable inside any
        tf.function, including an exported serving signature."""
        start, eos, pad = self._token_ids()
        if self.parts.max_positions is not None and config.max_length > self.parts.max_positions:
            raise ValueError(f"max_length={config.max_length} exceeds the decoder's max_position_embeddings "
                             f"({self.parts.max_positions})")
        encoder_token_ids = tf.cast(encoder_token_ids, tf.int32)
        encoder_padding_mask = tf.cast(encoder_padding_mask, tf.int32)
        encoder_sequence = self.parts.encode(encoder_token_ids, encoder_padding_mask, training=False)
        beams = config.num_beams
        if beams > 1:
            encoder_sequence = tf.repeat(encoder_sequence, beams, axis=0)
            encoder_padding_mask = tf.repeat(encoder_padding_mask, beams, axis=0)
        rows = tf.shape(encoder_sequence)[0]
        sequences = tf.concat([tf.fill([rows, 1], start), tf.fill([rows, config.max_length - 1], pad)], axis=1)
        context, caches = self._decoder_state(encoder_sequence, encoder_padding_mask, config.max_length,
                                              config.use_cache)
        next_logits = self._next_logits_fn(context, config.use_cache)
        if beams > 1:
            sequences, lengths, _ = beam_search(next_logits, caches, sequences, config, eos, pad)
        else:
            sequences, lengths = greedy_search(next_logits, caches, sequences, config, eos, pad, seed=seed)
        return sequences, lengths

    def _compiled_generate(self, config, jit_compile):
        key = (config, bool(jit_compile))
        functions = self._compiled.functions
        if key not in functions:
            if jit_compile and not config.use_cache:
                raise ValueError("jit_compile=True needs use_cache=True (without the cache the prefix grows "
                                 "every step, which XLA cannot compile to one static shape)")
            spec = tf.TensorSpec([None, None], tf.int32)

            def run(token_ids, padding_mask, seed):
                return self.generate_graph(token_ids, padding_mask, config, seed=seed)

            functions[key] = tf.function(
                run, input_signature=[spec, spec, tf.TensorSpec([], tf.int32)], jit_compile=bool(jit_compile), autograph=False,
                reduce_retracing=True)
        return functions[key]

    def generate_ids(self, encoder_token_ids, encoder_padding_mask=None, seed=None, jit_compile=False,
                     **generation_kwargs):
        """Token ids in ([B, T], padding 0 in the mask), token ids out: a list of B int lists, each
        starting with the decoder start token and ending with eos (unless max_length cut it)."""
        config = GenerationConfig(**generation_kwargs)
        token_ids = np.asarray(encoder_token_ids, dtype=np.int32)
        if token_ids.ndim != 2:
            raise ValueError(f"encoder_token_ids must be [batch, length], got shape {token_ids.shape}")
        mask = np.ones_like(token_ids) if encoder_padding_mask is None else np.asarray(encoder_padding_mask, np.int32)
        if mask.shape != token_ids.shape:
            raise ValueError(f"encoder_padding_mask has shape {mask.shape}, encoder_token_ids {token_ids.shape}")
        if seed is None:
            seed = np.random.randint(0, 2**31 - 1)
        sequences, lengths = self._compiled_generate(config, jit_compile)(
            tf.constant(token_ids), tf.constant(mask), tf.constant(int(seed), tf.int32))
        sequences, lengths = sequences.numpy(), lengths.numpy()
        return [row[:length].tolist() for row, length in zip(sequences, lengths)]

    def generate(self, inputs, tokenizer=None, max_input_length=512, batch_size=32, **generation_kwargs):
        """Texts (a str or a list of str) or a token batch ({"encoder_token_ids", "encoder_padding_mask"}
        or {"token_ids", "padding_mask"} as the tokenizer returns) -> generated strings.

        generation_kwargs: max_length, min_length, num_beams, length_penalty, early_stopping,
        no_repeat_ngram_size, do_sample, temperature, top_k, top_p, use_cache (see GenerationConfig),
        seed, jit_compile."""
        tokenizer = tokenizer or self.tokenizer
        if tokenizer is None:
            raise ValueError("generate needs a tokenizer: pass tokenizer=..., or load the model with from_pretrained")
        if isinstance(inputs, dict):
            ids = inputs.get("encoder_token_ids", inputs.get("token_ids"))
            mask = inputs.get("encoder_padding_mask", inputs.get("padding_mask"))
            if ids is None:
                raise ValueError(f"token batch needs `encoder_token_ids` or `token_ids`; got keys {sorted(inputs)}")
            return self._decode(tokenizer, self.generate_ids(ids, mask, **generation_kwargs))
        single = isinstance(inputs, str)
        texts = [inputs] if single else list(inputs)
        if not all(isinstance(text, str) for text in texts):
            raise TypeError("generate takes a str, a list of str, or a dict token batch")
        outputs = []
        for begin in range(0, len(texts), batch_size):
            features = tokenizer(texts[begin:begin + batch_size], max_length=max_input_length, padding="longest")
            ids = self.generate_ids(features["token_ids"].numpy(), features["padding_mask"].numpy(),
                                    **generation_kwargs)
            outputs += self._decode(tokenizer, ids)
        return outputs[0] if single else outputs

    @staticmethod
    def _decode(tokenizer, ids):
        if not ids:
            return []
        return [text.decode("utf-8") for text in tokenizer.detokenize(tf.ragged.constant(ids)).numpy()]


def load_tokenizer_if_present(directory):
    """RuBertTokenizer of `directory` when it has a vocab.txt, else None."""
    if directory and os.path.isfile(os.path.join(directory, "vocab.txt")):
        from rubert_tf.tokenizer import RuBertTokenizer

        return RuBertTokenizer.from_pretrained(directory)
    return None
