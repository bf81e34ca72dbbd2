"""Text -> generated text, as one graph: tokenize, encode, search (greedy or beam, a tf.while_loop with
the key/value cache) and detokenize. `generate` (greedy / beam) runs this module and export saves it;
sampling is not part of it, since a served model should answer the same request the same way."""

import tensorflow as tf

from rubert_tf.tasks.module import TaskModule, cached_module


def generation_config(model, settings, overrides=None):
    """GenerationConfig fields of the served search: the settings, then `overrides` (not None) on top."""
    kwargs = {"num_beams": settings.num_beams, "length_penalty": settings.length_penalty,
              "no_repeat_ngram_size": settings.no_repeat_ngram_size, "max_length": settings.output_length}
    if not settings.generation_max_length:
        # A long default stops at the decoder's last position (an explicit value is the caller's).
        positions = getattr(getattr(model.config, "decoder", None), "max_position_embeddings", None)
        if positions:
            kwargs["max_length"] = min(kwargs["max_length"], positions)
    kwargs.update({key: value for key, value in (overrides or {}).items() if value is not None})
    return kwargs


def serving_module(model, tokenizer, settings, generation=None):
    """TaskModule with "serving_default": `text` -> `output`."""
    from rubert_tf.models.generation import GenerationConfig

    config = GenerationConfig(**generation_config(model, settings, generation))
    if config.do_sample:
        raise ValueError("do_sample=True is not supported in a serving signature; use greedy or beam search")
    module = TaskModule(model, tokenizer, settings)

    def generate_text(text):
        features = module.tokenizer(text, max_length=settings.source_length, padding="longest")
        sequences, lengths = module.model.generate_graph(features["token_ids"], features["padding_mask"], config)
        # Only the first `lengths` tokens of a row are its output (the rest is padding).
        ids = tf.RaggedTensor.from_tensor(sequences, lengths=lengths)
        return {"output": module.tokenizer.detokenize(ids)}

    module.add_signature("serving_default", generate_text, ["text"])
    return module


def generate(model, texts, settings, batch_size=32, generation=None):
    """Generated strings for `texts` through the serving module (greedy or beam search)."""
    module = cached_module(model, model.tokenizer, settings,
                           lambda model, tokenizer, settings: serving_module(model, tokenizer, settings, generation),
                           variant=generation_config(model, settings, generation))
    outputs = []
    for start in range(0, len(texts), batch_size):
        result = module("serving_default", text=texts[start:start + batch_size])
        outputs += [text.decode("utf-8") for text in result["output"]]
    return outputs
