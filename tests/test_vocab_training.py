"""train_vocab learns a cased WordPiece vocab that fits RuBertTokenizer."""

import os
import time

import pytest
from tokenizers import BertWordPieceTokenizer, normalizers

from rubert_tf.tokenizer import RuBertTokenizer
from rubert_tf.vocab_training import count_words, train_vocab

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
if not os.path.isdir(DATA):
    DATA = "/work/shared/data"
RUSLIT = os.path.join(DATA, "ruslit", "ruslit_train.txt")
VOCAB_SIZE = 6000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    with open(RUSLIT, encoding="utf-8") as f:
        lines = [line for line in f.read().split("\n") if line]
    train, held_out = lines[:25000], lines[25000:]
    path = tmp_path_factory.mktemp("corpus") / "train.txt"
    path.write_text("\n".join(train) + "\n", encoding="utf-8")
    return path, train, held_out


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    path, _, _ = corpus
    out = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    start = time.perf_counter()
    vocab = train_vocab([path], VOCAB_SIZE, output_path=out)
    seconds = time.perf_counter() - start
    print(f"train_vocab on {path.stat().st_size / 1e6:.1f} MB: {seconds:.1f} s")
    return vocab, out, seconds


def test_layout_size_and_file(trained):
    vocab, out, seconds = trained
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert 0.9 * VOCAB_SIZE <= len(vocab) <= VOCAB_SIZE
    assert len(set(vocab)) == len(vocab) and all(vocab)
    assert out.read_text(encoding="utf-8").split("\n")[:-1] == vocab
    assert any(t.startswith("##") and len(t) > 3 for t in vocab)  # real merges were learned
    assert seconds < 45


def test_every_seen_character_is_in_vocab(trained, corpus):
    vocab, _, _ = trained
    path, train, _ = corpus
    tokens = set(vocab)
    # Every character HF keeps as (part of) a word, by HF's own normalizer.
    norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                      strip_accents=None, lowercase=False)
    chars = {c for c in set("".join(train)) if norm.normalize_str(c).strip()}
    assert len(chars) > 100
    assert chars <= tokens
    # Characters seen inside words are also needed as continuation pieces ("##c").
    inner = {c for word in count_words(path) for c in word[1:]}
    assert inner and all("##" + c in tokens for c in inner)


def test_trained_vocab_tokenizes_held_out_text(trained, corpus):
    vocab, out, _ = trained
    _, _, held_out = corpus
    tok = RuBertTokenizer(vocab)
    ids = tok.tokenize(held_out).flat_values.numpy()
    unk_rate = float((ids == tok.unk_id).mean())
    print(f"held-out [UNK] rate {unk_rate:.2e} over {ids.size} tokens")
    assert ids.size > 50_000
    assert unk_rate < 1e-3
    # Same ids as HF's BertWordPieceTokenizer built from the learned vocab (cased).
    hf = BertWordPieceTokenizer(str(out), lowercase=False, strip_accents=False)
    hf_ids = [e.ids for e in hf.encode_batch(held_out[:2000], add_special_tokens=False)]
    assert tok.tokenize(held_out[:2000]).to_list() == hf_ids


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        train_vocab([tmp_path / "missing.txt"], 100)
    (tmp_path / "tiny.txt").write_text("абвгд ежз\n", encoding="utf-8")
    with pytest.raises(ValueError, match="vocab_size"):
        train_vocab(tmp_path / "tiny.txt", 8)
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(ValueError, match="no words"):
        train_vocab(tmp_path / "empty.txt", 100)
    small = train_vocab(tmp_path / "tiny.txt", 100, min_frequency=1)
    assert small[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and len(small) <= 100
