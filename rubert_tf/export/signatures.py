"""Serving functions, text in and answers out, one per task; every output is batch-major.

Each builder returns a tf.Module whose `serving_functions` dict is what tf.saved_model.save writes. The graph
holds only TF core and tensorflow-text ops (the tokenizer runs inside), so the real TF Serving binary
can load it.
"""

import os
import tempfile

import numpy as np
import tensorflow as tf

NEG_INF = -1e9


def _text_spec(name):
    return tf.TensorSpec([None], tf.string, name=name)


class ServingModule(tf.Module):
    """Holds the Keras model, the tokenizer and any lookup tables, so SavedModel tracks them all.
    (`signatures` is reserved by SavedModel, hence `serving_functions`.)"""

    def __init__(self, model, tokenizer, max_length):
        super().__init__(name="rubert_serving")
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.serving_functions = {}

    def add_signature(self, name, fn, input_names):
        # A plain function wrapped here, not a method, so the signature's inputs are exactly the names.
        self.serving_functions[name] = tf.function(fn, input_signature=[_text_spec(n) for n in input_names])


def _label_table(labels):
    """int64 id -> label name, read from an asset file (labels.txt) that travels in the SavedModel."""
    directory = tempfile.mkdtemp(prefix="rubert_labels_")
    path = os.path.join(directory, "labels.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(labels) + "\n")
    initializer = tf.lookup.TextFileInitializer(
        path, key_dtype=tf.int64, key_index=tf.lookup.TextFileIndex.LINE_NUMBER,
        value_dtype=tf.string, value_index=tf.lookup.TextFileIndex.WHOLE_LINE)
    return tf.lookup.StaticHashTable(initializer, default_value="")


def classifier_module(model, tokenizer, max_length, text_pair=False):
    module = ServingModule(model, tokenizer, max_length)
    module.labels = _label_table(model.labels)
    multi_label = model.multi_label

    def classify(text, text_pair=None):
        features = module.tokenizer(text, text_pair, max_length=module.max_length, padding="longest")
        logits = module.model(features, training=False)["logits"]
        probabilities = tf.sigmoid(logits) if multi_label else tf.nn.softmax(logits, axis=-1)
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        return {"probabilities": probabilities, "label": module.labels.lookup(label_id), "label_id": label_id}

    if text_pair:
        module.add_signature("serving_default", lambda text, text_pair: classify(text, text_pair), ["text", "text_pair"])
    else:
        module.add_signature("serving_default", lambda text: classify(text), ["text"])
    return module


def _bio_parts(labels):
    """Per label id: prefix (0 = O, 1 = B, 2 = I) and entity-type index; plus the type names."""
    types, prefixes, type_ids = [], [], []
    for label in labels:
        prefix, _, entity_type = label.partition("-")
        if label == "O" or not entity_type:
            prefixes.append(0)
            type_ids.append(-1)
            continue
        if entity_type not in types:
            types.append(entity_type)
        prefixes.append(1 if prefix in ("B", "S") else 2)
        type_ids.append(types.index(entity_type))
    return prefixes, type_ids, types


def token_classifier_module(model, tokenizer, max_length):
    module = ServingModule(model, tokenizer, max_length)
    module.labels = _label_table(model.labels)
    prefixes, type_ids, types = _bio_parts(model.labels)
    label_prefix = tf.constant(prefixes, tf.int32)
    label_type = tf.constant(type_ids, tf.int32)
    type_names = tf.constant(types or [""], tf.string)
    # A piece continues a word when its vocab entry starts with "##" (WordPiece's suffix marker).
    continuation = tf.constant(np.array([token.startswith("##") for token in tokenizer.vocabulary]))
    specials = tf.constant([tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id], tf.int32)

    def tag(text):
        features = module.tokenizer(text, max_length=module.max_length, padding="longest", return_offsets=True)
        logits = module.model({k: features[k] for k in ("token_ids", "segment_ids", "padding_mask")},
                              training=False)["logits"]
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)  # [B, T]
        ids = features["token_ids"]
        real = tf.logical_and(features["padding_mask"] > 0,
                              tf.reduce_all(ids[:, :, None] != specials[None, None, :], axis=-1))
        word_start = tf.logical_and(real, tf.logical_not(tf.gather(continuation, ids)))
        tags = tf.where(word_start, module.labels.lookup(tf.cast(predicted, tf.int64)), "")

        # Words: a run of one start piece and its continuations; span = first start .. last end.
        starts, ends = features["offsets"][..., 0], features["offsets"][..., 1]
        word_id = tf.cumsum(tf.cast(word_start, tf.int32), axis=1) - 1  # per row
        words_per_row = tf.reduce_sum(tf.cast(word_start, tf.int32), axis=1)
        row_offset = tf.cumsum(words_per_row, exclusive=True)
        global_word = tf.boolean_mask(word_id + row_offset[:, None], real)
        total_words = tf.reduce_sum(words_per_row)
        word_end = tf.math.unsorted_segment_max(tf.boolean_mask(ends, real), global_word, total_words)
        word_begin = tf.boolean_mask(starts, word_start)
        word_label = tf.boolean_mask(predicted, word_start)
        batch = tf.shape(ids)[0]
        word_row = tf.repeat(tf.range(batch), words_per_row)

        prefix = tf.gather(label_prefix, word_label)
        entity_type = tf.gather(label_type, word_label)
        # The previous word in the same row (the first word of a row has "O" before it).
        first_of_row = tf.range(total_words) == tf.gather(row_offset, word_row)
        previous_prefix = tf.where(first_of_row, 0, tf.roll(prefix, 1, axis=0))
        previous_type = tf.where(first_of_row, -1, tf.roll(entity_type, 1, axis=0))
        in_entity = prefix > 0
        continues = (prefix == 2) & (previous_prefix > 0) & (previous_type == entity_type)
        begins = in_entity & tf.logical_not(continues)

        # Entity index per word, then span and type per entity (conlleval chunking).
        entity_of_word = tf.cumsum(tf.cast(begins, tf.int32)) - 1
        total_entities = tf.reduce_sum(tf.cast(begins, tf.int32))
        member = tf.boolean_mask(entity_of_word, in_entity)
        entity_end = tf.math.unsorted_segment_max(tf.boolean_mask(word_end, in_entity), member, total_entities)
        entity_start = tf.boolean_mask(word_begin, begins)
        entity_label = tf.gather(type_names, tf.maximum(tf.boolean_mask(entity_type, begins), 0))
        per_row = tf.math.unsorted_segment_sum(tf.cast(begins, tf.int64), word_row, batch)

        def padded(values, fill):
            return tf.RaggedTensor.from_row_lengths(values, per_row).to_tensor(default_value=fill)

        return {
            "tags": tags,
            "token_start": tf.where(real, starts, -1),
            "token_end": tf.where(real, ends, -1),
            "entity_start": padded(entity_start, -1),
            "entity_end": padded(entity_end, -1),
            "entity_label": padded(entity_label, ""),
            "entity_count": tf.cast(per_row, tf.int32),
        }

    module.add_signature("serving_default", tag, ["text"])
    return module


def question_answerer_module(model, tokenizer, max_length, max_answer_length=30, allow_no_answer=False):
    """One window per question (the context is cut at max_length tokens); the Python API `answer()`
    handles longer contexts with strided windows."""
    module = ServingModule(model, tokenizer, max_length)

    def answer(question, context):
        features = module.tokenizer(question, context, max_length=module.max_length, padding="longest",
                                    return_offsets=True)
        outputs = module.model({k: features[k] for k in ("token_ids", "segment_ids", "padding_mask")}, training=False)
        start_logits, end_logits = outputs["start_logits"], outputs["end_logits"]
        in_context = (features["segment_ids"] == 1) & (features["padding_mask"] > 0) & (
            features["token_ids"] != module.tokenizer.sep_id)
        width = tf.shape(start_logits)[1]
        position = tf.range(width)
        span = position[None, :] - position[:, None]  # end - start
        allowed = (span >= 0) & (span < max_answer_length)
        allowed = allowed[None] & in_context[:, :, None] & in_context[:, None, :]
        scores = tf.where(allowed, start_logits[:, :, None] + end_logits[:, None, :], NEG_INF)
        flat = tf.reshape(scores, [tf.shape(scores)[0], -1])
        best = tf.argmax(flat, axis=-1, output_type=tf.int32)
        best_start, best_end = best // width, best % width
        score = tf.reduce_max(flat, axis=-1)
        char_start = tf.gather(features["offsets"][..., 0], best_start, batch_dims=1)
        char_end = tf.gather(features["offsets"][..., 1], best_end, batch_dims=1)
        found = score > NEG_INF / 2  # false when the context got no tokens at all
        if allow_no_answer:
            found &= score > start_logits[:, 0] + end_logits[:, 0]
        char_start = tf.where(found, char_start, -1)
        char_end = tf.where(found, char_end, -1)
        text = tf.strings.substr(context, tf.maximum(char_start, 0), tf.maximum(char_end - char_start, 0),
                                 unit="UTF8_CHAR")
        return {"answer": tf.where(found, text, ""), "start": char_start, "end": char_end, "score": score}

    module.add_signature("serving_default", answer, ["question", "context"])
    return module


def embedding_module(model, tokenizer, max_length):
    module = ServingModule(model, tokenizer, max_length)

    def embed(text):
        features = module.tokenizer(text, max_length=module.max_length, padding="longest")
        outputs = module.model(features, training=False)
        embedding = outputs["embedding"] if "embedding" in outputs else outputs["pooled_output"]
        return {"embedding": tf.cast(embedding, tf.float32)}

    module.add_signature("serving_default", embed, ["text"])
    return module


def seq2seq_module(model, tokenizer, max_length, generation=None):
    """`text` -> `output`: tokenize, encode, search (greedy or beam, a tf.while_loop with the key/value
    cache) and detokenize, all in the graph. `generation`: GenerationConfig fields (num_beams,
    max_length of the output incl. the start token, length_penalty, ...); sampling is refused, since a
    served model should answer the same request the same way."""
    from rubert_tf.models.generation import GenerationConfig

    config = GenerationConfig(**(generation or {}))
    if config.do_sample:
        raise ValueError("export: do_sample=True is not supported in a serving signature; use greedy or beam search")
    module = ServingModule(model, tokenizer, max_length)

    def generate(text):
        features = module.tokenizer(text, max_length=module.max_length, padding="longest")
        sequences, lengths = module.model.generate_graph(features["token_ids"], features["padding_mask"], config)
        # Only the first `lengths` tokens of a row are its output (the rest is padding).
        ids = tf.RaggedTensor.from_tensor(sequences, lengths=lengths)
        return {"output": module.tokenizer.detokenize(ids)}

    module.add_signature("serving_default", generate, ["text"])
    return module
