"""RuBertTokenizer must give exactly HF's ids and offsets (tokenizers crate, rubert-tiny2)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers

from rubert_tf import unicode_tables
from rubert_tf.tokenizer import RuBertTokenizer, pretokenize

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
if not os.path.isdir(DATA):
    DATA = "/work/shared/data"
MODEL_DIR = os.path.join(DATA, "rubert-tiny2")
RUSLIT = os.path.join(DATA, "ruslit", "ruslit_train.txt")

HARD_CASES = [
    "",
    " ",
    "   \t\n  \r\n ",
    "\u3000\xa0\u2028",
    "😀 🥰 🤯 🫠 🫶🏽 👨‍👩‍👧 🇷🇺 ❤️",
    "смайлик🥰внутри слова🤯и🫠",
    "Hello мир Καλημέρα κόσμε 世界 你好吗 مرحبا بالعالم שלום 한국어 ภาษาไทย हिन्दी",
    "ёжик йод ЁЛКА Й, ещё",
    "е\u0308жик и\u0306од Е\u0308 — разложенные ё/й",
    "cafe\u0301 naïve Ünïcödé ḾÚŁŤÍ \u0301\u0301 а\u0300\u0301\u0302",
    "a\x00b\x07c\x1bd\x7fe\x85f управляющие\x0b\x0cсимволы",
    "zero\u200bwidth\u200cnon\u200djoiner при\u200bвет\u200b",
    "\ufeffBOM в начале \ufeff и в сере\ufeffдине",
    "NBSP\xa0здесь\u202fи\u2009тонкий",
    "line\u2028sep\u2029para\x1c\x1d\x1e\x1f",
    "tab\tsep\nnew\r\nline\rcr",
    "a" * 99, "a" * 100, "a" * 101, "я" * 99, "я" * 100, "я" * 101,
    "я" * 100 + "\u200b", "\u200b" + "я" * 101, "x " + "Ж" * 150 + " y",
    "числа 123 456,78 3.14 1e10 №5 2024-01-01 12:30 100% $5 €10 ½ ²",
    "https://example.com/path/to?q=1&x=y#frag user@mail.ru www.ya.ru",
    "?!... --- ((()))[[]]{{}} ***/// ;;;:::",
    "«Привет» — сказал он. „Так“ … “quoted” ‘single’ ‹›",
    "[MASK] [CLS]текст[SEP] [UNK] [PAD] [mask] [MASK [[MASK]] x[SEP]y",
    "\ufffd замена \ue000x \U000f0000y \U0010fffd",
    "中文和русский混合text",
    "Тест\u00adмягкий перенос",
    "\u0600\u061c\u06dd арабские форматы",
]


def _line_list():
    with open(RUSLIT, encoding="utf-8") as f:
        lines = f.read().split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


@pytest.fixture(scope="module")
def tok():
    return RuBertTokenizer.from_pretrained(MODEL_DIR)


@pytest.fixture(scope="module")
def hf():
    t = Tokenizer.from_file(os.path.join(MODEL_DIR, "tokenizer.json"))
    t.no_truncation()
    t.no_padding()
    return t


@pytest.fixture(scope="module")
def ruslit():
    return _line_list()


def _hf_padded(hf, texts, pairs=None, max_length=512):
    """HF reference with truncation (LongestFirst) and padding to max_length."""
    hf.enable_truncation(max_length)
    hf.enable_padding(length=max_length, pad_id=0, pad_token="[PAD]")
    try:
        if pairs is None:
            return hf.encode_batch(texts)
        return hf.encode_batch(list(zip(texts, pairs)))
    finally:
        hf.no_truncation()
        hf.no_padding()


def _assert_same_as_hf(out, encs, check_offsets=True):
    assert out["token_ids"].numpy().tolist() == [e.ids for e in encs]
    assert out["segment_ids"].numpy().tolist() == [e.type_ids for e in encs]
    assert out["padding_mask"].numpy().tolist() == [e.attention_mask for e in encs]
    if check_offsets:
        assert out["offsets"].numpy().tolist() == [[list(o) for o in e.offsets] for e in encs]


# ---------------------------------------------------------------- unicode tables


def test_unicode_tables_agree_with_tokenizers_on_every_code_point():
    norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                      strip_accents=None, lowercase=False)
    pre = pre_tokenizers.BertPreTokenizer()
    classes = bytearray(0x110000)  # NORMAL is 0
    for table, cls in ((unicode_tables.REMOVED, unicode_tables.REMOVED_CLASS),
                       (unicode_tables.WHITESPACE, unicode_tables.WHITESPACE_CLASS),
                       (unicode_tables.ISOLATED, unicode_tables.ISOLATED_CLASS)):
        for a, b in table:
            classes[a:b + 1] = bytes([cls]) * (b + 1 - a)

    code_points = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    mismatched_chunks = 0
    for i in range(0, len(code_points), 16384):
        chunk = code_points[i:i + 16384]
        # "a" before every char: separators split, isolated chars stand alone, removed vanish.
        text = "".join("a" + chr(cp) for cp in chunk)
        words, cur = [], ""
        for cp in chunk:
            cur += "a"
            cls = classes[cp]
            if cls == unicode_tables.NORMAL:
                cur += chr(cp)
            elif cls != unicode_tables.REMOVED_CLASS:
                words.append(cur)
                cur = ""
                if cls == unicode_tables.ISOLATED_CLASS:
                    words.append(chr(cp))
        words.append(cur)
        got = [w for w, _ in pre.pre_tokenize_str(norm.normalize_str(text))]
        mismatched_chunks += got != [w for w in words if w]
    assert mismatched_chunks == 0


# ---------------------------------------------------------------- parity on real text


def test_ruslit_ids_and_offsets_identical_to_hf(tok, hf, ruslit):
    assert len(ruslit) == 34493
    encs = hf.encode_batch(ruslit, add_special_tokens=False)
    id_mismatches = offset_mismatches = tokens = 0
    for i in range(0, len(ruslit), 2048):
        ids, starts, ends = tok.tokenize_with_offsets(ruslit[i:i + 2048])
        for enc, row_ids, row_s, row_e in zip(encs[i:i + 2048], ids.to_list(),
                                              starts.to_list(), ends.to_list()):
            tokens += len(enc.ids)
            id_mismatches += row_ids != enc.ids
            offset_mismatches += list(zip(row_s, row_e)) != enc.offsets
    print(f"ruslit: {len(ruslit)} lines, {tokens} tokens, id mismatches {id_mismatches}, "
          f"offset mismatches {offset_mismatches}")
    assert tokens > 700_000
    assert id_mismatches == 0
    assert offset_mismatches == 0


def test_ruslit_model_inputs_identical_to_hf_with_truncation(tok, hf, ruslit):
    lines = ruslit[:4096]
    encs = _hf_padded(hf, lines, max_length=128)
    mismatches = 0
    for i in range(0, len(lines), 2048):
        out = tok(lines[i:i + 2048], max_length=128, return_offsets=True)
        for j, e in enumerate(encs[i:i + 2048]):
            mismatches += (out["token_ids"][j].numpy().tolist() != e.ids
                           or out["offsets"][j].numpy().tolist() != [list(o) for o in e.offsets]
                           or out["padding_mask"][j].numpy().tolist() != e.attention_mask)
    print(f"ruslit model inputs (max_length=128): mismatches {mismatches}")
    assert mismatches == 0


def test_hard_cases_ids_and_offsets_identical_to_hf(tok, hf):
    ids, starts, ends = tok.tokenize_with_offsets(HARD_CASES)
    mismatches = []
    for text, row_ids, row_s, row_e in zip(HARD_CASES, ids.to_list(), starts.to_list(),
                                           ends.to_list()):
        enc = hf.encode(text)
        if row_ids != enc.ids[1:-1] or list(zip(row_s, row_e)) != enc.offsets[1:-1]:
            mismatches.append((text, row_ids, enc.ids[1:-1]))
    print(f"hard cases: {len(HARD_CASES)}, mismatches {len(mismatches)}")
    assert mismatches == []
    # And through the full call (specials, padding, offsets).
    _assert_same_as_hf(tok(HARD_CASES, max_length=512, return_offsets=True),
                       _hf_padded(hf, HARD_CASES))


def test_selected_expectations(tok):
    out = tok(["", "  \n\t "], max_length=4)
    assert out["token_ids"].numpy().tolist() == [[2, 3, 0, 0]] * 2
    assert out["padding_mask"].numpy().tolist() == [[1, 1, 0, 0]] * 2
    # A removed zero-width space joins the word; offsets skip it.
    ids, starts, ends = tok.tokenize_with_offsets("ab\u200bcd")
    assert starts.to_list() == [[0, 3, 4]] and ends.to_list() == [[2, 4, 5]]
    # Literal special tokens in text are matched like HF's added tokens.
    assert tok.tokenize("a [MASK] b").to_list()[0][1] == tok.mask_id
    # Word-length limit is in characters: 100 Cyrillic chars are fine, 101 are one [UNK].
    assert tok.tokenize("я" * 100).to_list()[0] != [tok.unk_id]
    assert tok.tokenize("я" * 101).to_list() == [[tok.unk_id]]


def test_100k_character_text_is_truncated_like_hf(tok, hf):
    text = ("Съешь же ещё этих мягких французских булок, да выпей чаю. " * 1800)[:100_000]
    assert len(text) == 100_000
    out = tok(text, max_length=512, return_offsets=True)
    assert out["token_ids"].shape == (1, 512)
    _assert_same_as_hf(out, _hf_padded(hf, [text], max_length=512))
    assert tok.tokenize(text).to_list()[0] == hf.encode(text, add_special_tokens=False).ids


def test_pretokenize_matches_hf_words(hf, ruslit):
    lines = ruslit[:500] + HARD_CASES
    words = pretokenize(lines).to_list()
    expected = [[w for w, _ in hf.pre_tokenizer.pre_tokenize_str(hf.normalizer.normalize_str(t))]
                for t in lines]
    assert [[w.decode() for w in row] for row in words] == expected


# ---------------------------------------------------------------- pairs, padding, truncation


@pytest.mark.parametrize("len_a,len_b,max_length", [
    (5, 5, 8), (5, 5, 9), (7, 7, 11), (10, 3, 10), (3, 10, 10), (20, 20, 9), (0, 10, 6),
    (10, 0, 6), (4, 4, 11), (50, 1, 10), (1, 50, 10), (6, 4, 9), (4, 6, 9), (8, 8, 3),
])
def test_pair_truncation_matches_hf(tok, hf, len_a, len_b, max_length):
    # Distinct single-token words so that truncation is visible token by token.
    a = " ".join(["мама", "мыла", "раму"][i % 3] for i in range(len_a))
    b = " ".join(["кот", "пёс", "дом"][i % 3] for i in range(len_b))
    texts, pairs = [a, b, "Да.", ""], [b, a, "Нет, конечно!", "Пусто?"]
    out = tok(texts, pairs, max_length=max_length, return_offsets=True)
    _assert_same_as_hf(out, _hf_padded(hf, texts, pairs, max_length=max_length))


def test_pairs_on_real_text_match_hf(tok, hf, ruslit):
    texts, pairs = ruslit[100:400], ruslit[400:700]
    for max_length in (16, 64, 256):
        out = tok(texts, text_pairs=pairs, max_length=max_length, return_offsets=True)
        _assert_same_as_hf(out, _hf_padded(hf, texts, pairs, max_length=max_length))


def test_padding_longest_and_truncation_false(tok, hf):
    texts = ["короткий", "чуть более длинный текст здесь"]
    out = tok(texts, padding="longest", max_length=512)
    lengths = [len(hf.encode(t).ids) for t in texts]
    assert out["token_ids"].shape == (2, max(lengths))
    assert out["padding_mask"].numpy().sum(axis=1).tolist() == lengths
    assert tok(texts, padding="longest", max_length=4)["token_ids"].shape == (2, 4)
    ok = tok(texts, max_length=16, truncation=False)
    assert ok["token_ids"].shape == (2, 16)
    with pytest.raises(tf.errors.InvalidArgumentError, match="truncation=False"):
        tok(texts, max_length=5, truncation=False)


# ---------------------------------------------------------------- graph contexts


def test_works_in_tf_function_and_tf_data(tok, ruslit):
    texts = ruslit[:10] + HARD_CASES[:6]
    eager = tok(texts, max_length=32)

    ds = tf.data.Dataset.from_tensor_slices(texts).batch(4).map(
        lambda t: tok(t, max_length=32))
    batches = list(ds)
    for key in ("token_ids", "segment_ids", "padding_mask"):
        got = np.concatenate([b[key].numpy() for b in batches])
        np.testing.assert_array_equal(got, eager[key].numpy())

    @tf.function
    def encode(t, p):
        return tok(t, p, max_length=32, return_offsets=True)

    graph = encode(tf.constant(texts), tf.constant(texts[::-1]))
    ref = tok(texts, texts[::-1], max_length=32, return_offsets=True)
    for key in ref:
        np.testing.assert_array_equal(graph[key].numpy(), ref[key].numpy())
    assert graph["token_ids"].shape.as_list() == [len(texts), 32]


def test_savedmodel_round_trip(tok, ruslit, tmp_path):
    class Exporter(tf.Module):
        def __init__(self, tokenizer):
            super().__init__()
            self.tokenizer = tokenizer

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, texts):
            return self.tokenizer(texts, max_length=64, return_offsets=True)

    tf.saved_model.save(Exporter(tok), str(tmp_path / "tok"))
    loaded = tf.saved_model.load(str(tmp_path / "tok"))
    texts = ruslit[:20] + HARD_CASES
    got = loaded.serve(tf.constant(texts))
    ref = tok(texts, max_length=64, return_offsets=True)
    for key in ref:
        np.testing.assert_array_equal(got[key].numpy(), ref[key].numpy())


# ---------------------------------------------------------------- detokenize


def test_detokenize_matches_hf_decode(tok, hf, ruslit):
    texts = ruslit[1000:1300] + HARD_CASES
    out = tok(texts, max_length=128)
    got = [s.decode("utf-8") for s in tok.detokenize(out["token_ids"]).numpy()]
    expected = [hf.decode(ids, skip_special_tokens=True)
                for ids in out["token_ids"].numpy().tolist()]
    assert got == expected
    # Ragged and list inputs, unknown ids and a leading "##" piece.
    ids = [[tok.token_to_id("##ов"), 68, 99_999_999, 1, 3, 75], [5, 6, 7]]
    got = [s.decode() for s in tok.detokenize(tf.ragged.constant(ids)).numpy()]
    assert got == [hf.decode(ids[0]), hf.decode(ids[1])]
    assert tok.detokenize([[-1, 5, -7, 6]]).numpy()[0].decode() == hf.decode([5, 6])
    assert tok.detokenize([5, 6, 7]).numpy().decode() == hf.decode([5, 6, 7])


def test_detokenize_tables_match_wordpiece_decoder(tok):
    decoder = decoders.WordPiece(prefix="##", cleanup=True)
    vocab = tok.vocabulary
    first = [s.decode() for s in tok._decode_first.numpy()]
    later = [s.decode() for s in tok._decode_next.numpy()]
    assert first == [decoder.decode([t]) for t in vocab]
    assert ["x" + s for s in later] == [decoder.decode(["x", t]) for t in vocab]


# ---------------------------------------------------------------- vocabulary, loading, errors


def test_vocabulary_api(tok):
    with open(os.path.join(MODEL_DIR, "vocab.txt"), encoding="utf-8") as f:
        vocab = f.read().split("\n")[:-1]
    assert tok.vocab_size == len(vocab) == 83828
    assert tok.vocabulary == vocab
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert tok.token_to_id("привет") == 32840 and tok.id_to_token(32840) == "привет"
    with pytest.raises(KeyError, match="нетакогослова"):
        tok.token_to_id("нетакогослова")
    with pytest.raises(ValueError, match="out of range"):
        tok.id_to_token(10**6)


def test_save_pretrained_round_trip_and_hf_loads_it(tok, hf, tmp_path):
    from transformers import BertTokenizerFast

    tok.save_pretrained(tmp_path)
    with open(tmp_path / "tokenizer_config.json", encoding="utf-8") as f:
        assert json.load(f)["do_lower_case"] is False
    again = RuBertTokenizer.from_pretrained(tmp_path)
    assert again.vocabulary == tok.vocabulary
    hf_fast = BertTokenizerFast.from_pretrained(str(tmp_path))
    texts = HARD_CASES[6:12]
    assert hf_fast(texts)["input_ids"] == [e.ids for e in hf.encode_batch(texts)]
    assert again.tokenize(texts).to_list() == [e.ids[1:-1] for e in hf.encode_batch(texts)]


def test_tokenizer_from_small_vocab_list():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "при", "##вет", "мир", ",", "!"]
    small = RuBertTokenizer(vocab)
    assert small.tokenize(["привет, мир!", "пока"]).to_list() == [[5, 6, 8, 7, 9], [1]]


def test_clear_errors(tok, tmp_path):
    with pytest.raises(TypeError, match="texts"):
        tok(123)
    with pytest.raises(TypeError, match="texts"):
        tok(["ok", 5])
    with pytest.raises(TypeError, match="texts"):
        tok(tf.constant([1, 2]))
    with pytest.raises(ValueError, match="texts"):
        tok(tf.constant([["a", "b"]]))
    with pytest.raises(TypeError, match="text_pairs"):
        tok(["a"], text_pairs=[None])
    with pytest.raises(ValueError, match="text_pairs"):
        tok(["a", "b"], text_pairs=["c"])
    with pytest.raises(ValueError, match="padding"):
        tok("a", padding="do_not_pad")
    with pytest.raises(ValueError, match="max_length"):
        tok("a", "b", max_length=2)
    with pytest.raises(ValueError, match=r"\[MASK\]"):
        RuBertTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"])
    with pytest.raises(ValueError, match="duplicate"):
        RuBertTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "a"])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        RuBertTokenizer.from_pretrained(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        RuBertTokenizer.from_pretrained(tmp_path)
    lower = tmp_path / "lower"
    lower.mkdir()
    (lower / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", encoding="utf-8")
    (lower / "tokenizer_config.json").write_text('{"do_lower_case": true}', encoding="utf-8")
    with pytest.raises(NotImplementedError, match="tokenizer_config.json"):
        RuBertTokenizer.from_pretrained(lower)
    with pytest.raises(TypeError, match="ids"):
        tok.detokenize(tf.constant([[0.5]]))
