"""Text -> embedding, as one graph: what `encode` runs and what export saves.

Output per text: `embedding` [B, H] float32 (the sentence encoder's pooled, normalised vector; a
plain RuBertEncoder gives its pooled [CLS] output).
"""

import numpy as np
import tensorflow as tf

from rubert_tf.tasks.module import TaskModule, cached_module


def serving_module(model, tokenizer, settings):
    module = TaskModule(model, tokenizer, settings)

    def embed(text):
        features = module.tokenizer(text, max_length=settings.max_length, padding="longest")
        outputs = module.model(features, training=False)
        embedding = outputs["embedding"] if "embedding" in outputs else outputs["pooled_output"]
        return {"embedding": tf.cast(embedding, tf.float32)}

    module.add_signature("serving_default", embed, ["text"])
    return module


def encode(model, texts, max_length=None, batch_size=32):
    """Raw strings -> np.ndarray [N, H] (one string -> [H]), through the serving module."""
    from rubert_tf.tasks.sentence.settings import SentenceSettings

    single = isinstance(texts, str)
    texts = [texts] if single else list(texts)
    settings = SentenceSettings.resolve(model, {"max_length": max_length})
    module = cached_module(model, model._require_tokenizer(), settings, serving_module)
    chunks = [module("serving_default", text=texts[start:start + batch_size])["embedding"]
              for start in range(0, len(texts), batch_size)]
    hidden = model.config.hidden_size
    embeddings = np.concatenate(chunks) if chunks else np.zeros((0, hidden), "float32")
    return embeddings[0] if single else embeddings
