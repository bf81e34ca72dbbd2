"""Shared test fixtures: where ../shared/data is, and a small random checkpoint with the real vocab."""

import os

import pytest

SHARED_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
TINY2_DIR = os.path.join(SHARED_DATA, "rubert-tiny2")

# rubert-tiny2's real vocabulary (83,828 tokens) on a small random body: real tokenization, fast tests.
SMALL_BODY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                  max_position_embeddings=512)


@pytest.fixture(scope="session")
def shared_data():
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A HF-layout directory (config.json, model.safetensors, vocab.txt, tokenizer_config.json) of a
    small random RuBERT with the real rubert-tiny2 vocab."""
    import keras

    import rubert_tf as rt

    keras.utils.set_random_seed(1234)
    tokenizer = rt.RuBertTokenizer(os.path.join(TINY2_DIR, "vocab.txt"))
    config = rt.RuBertConfig(vocab_size=tokenizer.vocab_size, **SMALL_BODY)
    directory = str(tmp_path_factory.mktemp("tiny_checkpoint"))
    rt.RuBertEncoder(config).save_pretrained(directory, tokenizer=tokenizer)
    return directory


@pytest.fixture
def float32_policy():
    """The float32 global dtype policy inside a test (another test may leave a mixed one behind), the
    previous one restored after; modules use it with `pytestmark = pytest.mark.usefixtures("float32_policy")`."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy(previous)
