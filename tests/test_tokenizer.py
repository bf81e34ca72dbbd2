"""RuBertTokenizer must give exactly HF's ids and offsets (tokenizers crate, rubert-tiny2)."""

import json
import os
import random
import shutil
import subprocess
import sys
import warnings

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
    "[SEP]", "[", "конец [MAS", "конец [SEP", "слово[CLS]", "[[[PAD][UNK]]]", "[​MASK]", "[MA­SK]",
    "\ufffd замена \ue000x \U000f0000y \U0010fffd",
    "中文和русский混合text",
    "Тест\u00adмягкий перенос",
    "\u0600\u061c\u06dd арабские форматы",
]


# Uncased path (lowercase / strip_accents): NFD expansion, mark stripping, canonical
# reordering (with the crate's positional alignments), multi-char lowercasing.
UNCASED_HARD_CASES = [
    "ЁЖИК Ёлка ёлка ЙОД Йогурт йод ПРИВЕТ Привет МИР ЩУКА ЪЕЪ ЭХО",
    "е\u0308 и\u0306 Е\u0308ЛКА И\u0306ОД е\u0308\u0308ж ё\u0301",
    "İstanbul İİ DİYARBAKIR ı I i\u0307 I\u0307",
    "Straße STRASSE ẞ groß GROẞ",
    "ΣΟΦΟΣ ΟΔΟΣ σοφός Σ ς ΌΛΑ Ά\u0301",
    "ﬁnal ﬂow ﬀ Ǆ ǅ ǆ Ǳ ĳ Ĳ ŉ",
    "café CAFÉ cafe\u0301 CAFE\u0301 naïve NAÏVE Ångström Å Ω K",
    "а\u0300\u0301\u0302 \u0301\u0301 x\u0301\u0316 \u0345 ᾼ ᾳ ǰ",
    "x\u0301\U0001D165 y \u0301\U0001D165z a\U0001D16D\U0001D165 \U0001D160 \u1b44\u0301\u1b44",
    "\u0f73\u0f74 \u0f74\u0f73 \u0344 \u0340 \u1fef \u1fed \u037e \u2adc",
    "한국어 가각 ᄀ\u1161 \uf900\uf901 中文 豈",
    "[MASK] [mask] [Mask] [CLS]ТЕКСТ[SEP] É[SEP]\u0301ё [UNK]\u0308",
    "ТЕСТ\u00adМЯГКИЙ ПРИ\u200bВЕТ \u0301\u200b\u0316 Ё\u200b\u0308",
    "Ⅻ Ⓐ ＡＢＣ ᏸ Ꭰ 𐐀 𞤀 ǲ Ա Ⴀ",
    "ё" * 100, "Ё" * 101, "е\u0308" * 60, "İ" * 60, "İ" * 51,
]

UNCASED_MODES = [(True, None), (True, False), (False, True)]  # (lowercase, strip_accents)


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


def test_texts_longer_than_the_prefix_bound_keep_hf_ids_and_offsets(tok, hf, ruslit):
    """Only a bounded prefix of a long text is normalised and tokenized (issue 14); on real text the ids
    and offsets of what is kept stay exactly HF's, for single texts and pairs, at every budget."""
    from rubert_tf.tokenizer import prefix_bytes

    joined = " ".join(ruslit[:10000])
    for max_length in (8, 64, 512):
        cap = prefix_bytes(max_length - 2)
        # About 5x the bound in bytes (HF's own truncation builds overflow encodings: no bigger texts here)
        long = joined[: 3 * cap]
        dense = ("«Да!»,—(нет)…" * cap)[: 3 * cap]  # punctuation-dense, no spaces
        texts = [long[: cap], long, long[5:], dense, "коротко", ""]
        assert len(joined) > 3 * cap and min(len(t.encode()) for t in texts[1:4]) > 4 * cap
        out = tok(texts, max_length=max_length, return_offsets=True)
        _assert_same_as_hf(out, _hf_padded(hf, texts, max_length=max_length))
        # One long side per pair: HF's reference builds every combination of both sides' overflows
        pairs = ["вопрос?", "а", "", "кот и пёс", long[7:], dense]
        out = tok(texts, pairs, max_length=max_length, return_offsets=True)
        _assert_same_as_hf(out, _hf_padded(hf, texts, pairs, max_length=max_length))


def test_a_50_mb_text_costs_what_its_prefix_costs(tmp_path):
    """Was ~3 GB and a minute for one 50 MB text: the whole text was normalised although 128 tokens are
    kept. Measured in a fresh process (peak RSS is per process)."""
    script = tmp_path / "big.py"
    script.write_text(f"""
import resource
from rubert_tf.tokenizer import RuBertTokenizer
tok = RuBertTokenizer.from_pretrained({MODEL_DIR!r})
small = tok(["Мама мыла раму."], max_length=128)
big = ("Мама мыла раму, а папа читал «Войну и мир». " * 1_300_000)[:28_000_000]  # 50 MB of UTF-8
assert len(big.encode()) > 45_000_000
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ids = tok([big], max_length=128)["token_ids"].numpy()
growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
same = (ids == tok([big[:20000]], max_length=128)["token_ids"].numpy()).all()
print("growth_mb", growth_mb, "same", same)
""")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    growth = float(done.stdout.split("growth_mb")[1].split()[0])
    assert "same True" in done.stdout
    assert growth < 400, done.stdout  # the text itself (50 MB as str, bytes and tensor) is most of it


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


# ---------------------------------------------------------------- uncased (lowercase, accents)


def _uncased_hf(lowercase, strip_accents):
    """The reference: rubert-tiny2's tokenizer.json with an uncased BertNormalizer."""
    t = Tokenizer.from_file(os.path.join(MODEL_DIR, "tokenizer.json"))
    t.no_truncation()
    t.no_padding()
    t.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                              strip_accents=strip_accents, lowercase=lowercase)
    return t


@pytest.fixture(scope="module")
def mode_toks(tok):
    """RuBertTokenizer per (lowercase, strip_accents), built once (each costs a graph trace)."""
    cache = {(False, None): tok}

    def get(lowercase, strip_accents):
        if (lowercase, strip_accents) not in cache:
            cache[lowercase, strip_accents] = RuBertTokenizer(
                tok.vocabulary, lowercase=lowercase, strip_accents=strip_accents)
        return cache[lowercase, strip_accents]
    return get


@pytest.fixture(scope="module")
def tok_uncased(mode_toks):
    return mode_toks(True, None)


@pytest.fixture(scope="module")
def hf_uncased():
    return _uncased_hf(True, None)


def _mismatches(tokenizer, hf_tok, texts, batch=2048):
    """(id mismatches, offset mismatches, tokens, first few bad texts) vs HF, no specials."""
    encs = hf_tok.encode_batch(texts, add_special_tokens=False)
    id_bad = offset_bad = tokens = 0
    bad = []
    for i in range(0, len(texts), batch):
        ids, starts, ends = tokenizer.tokenize_with_offsets(texts[i:i + batch])
        for text, enc, row_ids, row_s, row_e in zip(texts[i:i + batch], encs[i:i + batch],
                                                    ids.to_list(), starts.to_list(),
                                                    ends.to_list()):
            tokens += len(enc.ids)
            id_bad += row_ids != enc.ids
            offset_bad += list(zip(row_s, row_e)) != enc.offsets
            if (row_ids != enc.ids or list(zip(row_s, row_e)) != enc.offsets) and len(bad) < 5:
                bad.append((text, row_ids, enc.ids, list(zip(row_s, row_e)), enc.offsets))
    return id_bad, offset_bad, tokens, bad


def test_uncased_ruslit_ids_and_offsets_identical_to_hf(tok_uncased, hf_uncased, ruslit):
    id_bad, offset_bad, tokens, bad = _mismatches(tok_uncased, hf_uncased, ruslit)
    print(f"uncased ruslit: {len(ruslit)} lines, {tokens} tokens, id mismatches {id_bad}, "
          f"offset mismatches {offset_bad}")
    assert tokens > 700_000
    assert (id_bad, offset_bad, bad) == (0, 0, [])


@pytest.mark.parametrize("lowercase,strip_accents", UNCASED_MODES)
def test_uncased_modes_identical_to_hf(mode_toks, ruslit, lowercase, strip_accents):
    """Hard cases, a ruslit slice and random strings of combining marks (incl. spacing ones
    with a combining class, which survive stripping and get reordered), decomposable and
    case-changing chars, in each BertNormalizer mode."""
    mode_tok = mode_toks(lowercase, strip_accents)
    hf_mode = _uncased_hf(lowercase, strip_accents)
    texts = HARD_CASES + UNCASED_HARD_CASES
    id_bad, offset_bad, _, bad = _mismatches(mode_tok, hf_mode, texts)
    assert (id_bad, offset_bad, bad) == (0, 0, [])
    # And through the full call (specials, padding, truncation, offsets).
    _assert_same_as_hf(mode_tok(texts, max_length=64, return_offsets=True),
                       _hf_padded(hf_mode, texts, max_length=64))

    lines = ruslit[::10]
    id_bad, offset_bad, tokens, bad = _mismatches(mode_tok, hf_mode, lines)
    print(f"lowercase={lowercase} strip_accents={strip_accents}: {len(lines)} ruslit lines, "
          f"{tokens} tokens, id mismatches {id_bad}, offset mismatches {offset_bad}")
    assert (id_bad, offset_bad, bad) == (0, 0, [])

    combining = [cp for a, b, _ in unicode_tables.COMBINING_CLASSES for cp in range(a, b + 1)]
    marks = {cp for a, b in unicode_tables.NONSPACING_MARKS for cp in range(a, b + 1)}
    spacing = [cp for cp in combining if cp not in marks]
    cased = [first for first, _, _, _ in unicode_tables.LOWERCASE_RUNS] + [0x130]
    pool = (spacing * 20 + combining + list(unicode_tables.DECOMPOSITION) + cased * 5
            + [ord(c) for c in "абвгдеёжзийЁЙАБВ aZ,.!?-\u200b\u00ad\t\n\u3000中\uf900"
               "\u0301\u0308\u0306İßΣ"] * 10 + list(range(0xAC00, 0xAC20)))
    rng = random.Random(1234)
    texts = ["".join(chr(rng.choice(pool)) for _ in range(rng.randint(0, 30)))
             for _ in range(4000)]
    texts += ["[MASK]" + t + "[SEP]\u0301" + t[::-1] for t in texts[:400]]
    id_bad, offset_bad, _, bad = _mismatches(mode_tok, hf_mode, texts)
    assert (id_bad, offset_bad, bad) == (0, 0, [])


def test_uncased_selected_expectations(tok_uncased):
    def pieces(text):
        return [tok_uncased.id_to_token(i) for i in tok_uncased.tokenize(text).to_list()[0]]

    # ё/й lose their diacritics exactly as in HF's uncased path, precomposed or not.
    assert pieces("ЁЛКА") == pieces("ёлка") == pieces("е\u0308лка") == pieces("елка")
    assert pieces("ЙОД") == pieces("и\u0306од") == pieces("иод")
    # Offsets point into the original text (as HF's): "İ" -> "i"; the dropped U+0308 belongs
    # to no piece unless it is inside one.
    ids, starts, ends = tok_uncased.tokenize_with_offsets(["İ е\u0308ж", "Ёлка е\u0308лка"])
    assert [[tok_uncased.id_to_token(i) for i in row] for row in ids.to_list()] == [
        ["i", "е", "##ж"], ["ел", "##ка", "ел", "##ка"]]
    assert [list(zip(s, e)) for s, e in zip(starts.to_list(), ends.to_list())] == [
        [(0, 1), (2, 3), (4, 5)], [(0, 2), (2, 4), (5, 8), (8, 10)]]
    # Canonical reordering moves the spacing mark U+1D165 (class 216) before U+0301 (230);
    # the crate's alignments are positional, so the word ends at 2, not 3.
    assert tok_uncased.tokenize_with_offsets("x\u0301\U0001D165")[2].to_list() == [[2]]
    # Added tokens are matched in the raw text only: "[mask]" is not [MASK].
    assert tok_uncased.tokenize("[MASK]").to_list() == [[tok_uncased.mask_id]]
    assert tok_uncased.mask_id not in tok_uncased.tokenize("[mask]").to_list()[0]


def _uncased_code_points(every=1):
    """Code points the uncased normalizer touches (or produces), plus every `every`-th one."""
    cps = set(range(0, 0x110000, every))
    cps.update(range(0xAC00, 0xAC00 + 11172))  # Hangul syllables
    for cp, d in unicode_tables.DECOMPOSITION.items():
        cps.update((cp,) + d)
    for cp, d in unicode_tables.LOWERCASE_SPECIAL.items():
        cps.update((cp,) + d)
    for first, last, step, delta in unicode_tables.LOWERCASE_RUNS:
        cps.update(cp + k for cp in range(first, last + 1, step) for k in (0, delta))
    for a, b in unicode_tables.NONSPACING_MARKS:
        cps.update(range(a, b + 1))
    for a, b, _ in unicode_tables.COMBINING_CLASSES:
        cps.update(range(a, b + 1))
    return sorted(cp for cp in cps if not 0xD800 <= cp <= 0xDFFF)


@pytest.mark.parametrize("lowercase,strip_accents", UNCASED_MODES)
def test_uncased_pretokenize_agrees_with_tokenizers_on_every_code_point(lowercase, strip_accents):
    """Each code point between letters, then U+0334 (combining class 1, so every char with a
    higher class is reordered past it): the words of HF's BertNormalizer + BertPreTokenizer
    must be exactly ours. All code points for the default uncased mode; for the others those
    the normalizer touches and every 16th (the rest is the cased path, tested above)."""
    norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                      strip_accents=strip_accents, lowercase=lowercase)
    pre = pre_tokenizers.BertPreTokenizer()
    code_points = _uncased_code_points(1 if strip_accents is None else 16)
    texts = ["".join("a" + chr(cp) + "\u0334" for cp in code_points[i:i + 16384])
             for i in range(0, len(code_points), 16384)]
    got = pretokenize(texts, lowercase=lowercase, strip_accents=strip_accents).to_list()
    mismatched = sum([w.decode() for w in row] != [w for w, _ in pre.pre_tokenize_str(
        norm.normalize_str(text))] for row, text in zip(got, texts))
    assert mismatched == 0


def test_uncased_code_points_ids_and_offsets(tok_uncased, hf_uncased):
    """Each code point the normalizer touches, and every 8th, as a word of its own, after a
    capital and before a combining mark: ids and offsets."""
    code_points = _uncased_code_points(8)
    texts = [" ".join("Ж" + chr(cp) + "\u0301" for cp in code_points[i:i + 16384])
             for i in range(0, len(code_points), 16384)]
    id_bad, offset_bad, _, bad = _mismatches(tok_uncased, hf_uncased, texts)
    assert (id_bad, offset_bad) == (0, 0), bad[:1]


def test_uncased_tables_sanity():
    """Spot checks of the generated tables (the crate's Unicode data, not Python's)."""
    import unicodedata

    assert unicode_tables.DECOMPOSITION[0x0419] == (0x0418, 0x0306)  # Й
    assert unicode_tables.DECOMPOSITION[0x0401] == (0x0415, 0x0308)  # Ё
    assert unicode_tables.LOWERCASE_SPECIAL == {0x0130: (0x0069, 0x0307)}  # İ
    for cp, d in unicode_tables.DECOMPOSITION.items():
        assert unicodedata.normalize("NFD", chr(cp)) == "".join(map(chr, d))
    # U+1734 HANUNOO SIGN PAMUDPOD is Mn in the crate's (older) data, Mc in Python's.
    assert [cp for a, b in unicode_tables.NONSPACING_MARKS for cp in range(a, b + 1)
            if unicodedata.category(chr(cp)) != "Mn"] == [0x1734]


def test_uncased_in_tf_function_and_savedmodel(tok_uncased, ruslit, tmp_path):
    texts = ruslit[:20] + UNCASED_HARD_CASES
    ref = tok_uncased(texts, max_length=64, return_offsets=True)

    @tf.function
    def encode(t):
        return tok_uncased(t, max_length=64, return_offsets=True)

    class Exporter(tf.Module):
        def __init__(self, tokenizer):
            super().__init__()
            self.tokenizer = tokenizer

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, texts):
            return self.tokenizer(texts, max_length=64, return_offsets=True)

    tf.saved_model.save(Exporter(tok_uncased), str(tmp_path / "tok"))
    loaded = tf.saved_model.load(str(tmp_path / "tok"))
    for got in (encode(tf.constant(texts)), loaded.serve(tf.constant(texts))):
        for key in ref:
            np.testing.assert_array_equal(got[key].numpy(), ref[key].numpy())


SMALL_VOCAB_SIZE = 3000  # loading tests only check settings: a small vocab builds fast


def _model_dir(tmp_path, name, config=None, tokenizer_json_lowercase=None,
               vocab_size=SMALL_VOCAB_SIZE):
    """A directory of rubert-tiny2's tokenizer files (vocab cut to `vocab_size`): vocab.txt,
    config.json, optional tokenizer_config.json and tokenizer.json (normalizer lowercase
    set to `tokenizer_json_lowercase`)."""
    directory = tmp_path / name
    directory.mkdir()
    with open(os.path.join(MODEL_DIR, "vocab.txt"), encoding="utf-8") as f:
        vocab = f.read().split("\n")[:-1][:vocab_size]
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    shutil.copy(os.path.join(MODEL_DIR, "config.json"), directory)
    if config is not None:
        (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    if tokenizer_json_lowercase is not None:
        with open(os.path.join(MODEL_DIR, "tokenizer.json"), encoding="utf-8") as f:
            data = json.load(f)
        data["normalizer"]["lowercase"] = tokenizer_json_lowercase
        data["model"]["vocab"] = {t: i for i, t in enumerate(vocab)}
        with open(directory / "tokenizer.json", "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)
    return directory


def _hf_normalizer(directory, auto=False):
    """(lowercase, strip_accents) of the normalizer transformers builds for `directory`."""
    from transformers import AutoTokenizer, BertTokenizerFast

    cls = AutoTokenizer if auto else BertTokenizerFast
    state = json.loads(cls.from_pretrained(str(directory)).backend_tokenizer.normalizer
                       .__getstate__())
    assert state["type"] == "BertNormalizer"
    return state["lowercase"], state["strip_accents"]


def test_vocab_only_directory_loads_uncased_like_hf(tmp_path, tok_uncased, ruslit):
    """ai-forever/ruBert-base / ruBert-large ship only vocab.txt (+ config.json): HF defaults
    to do_lower_case=True, which also strips accents."""
    from transformers import BertTokenizerFast

    directory = _model_dir(tmp_path, "vocab_only", vocab_size=None)
    ours = RuBertTokenizer.from_pretrained(directory)
    assert (ours.lowercase, ours.strip_accents) == (True, None)
    texts = ruslit[:200] + HARD_CASES + UNCASED_HARD_CASES
    expected = BertTokenizerFast.from_pretrained(str(directory))(
        texts, add_special_tokens=False, return_offsets_mapping=True)
    ids, starts, ends = ours.tokenize_with_offsets(texts)
    assert ids.to_list() == expected["input_ids"]
    assert [list(zip(s, e)) for s, e in zip(starts.to_list(), ends.to_list())] == [
        [tuple(o) for o in row] for row in expected["offset_mapping"]]


def test_do_lower_case_false_stays_cased(tok, tmp_path):
    directory = _model_dir(tmp_path, "cased", config={"do_lower_case": False})
    ours = RuBertTokenizer.from_pretrained(directory)
    assert (ours.lowercase, ours.strip_accents) == (False, None) == _hf_normalizer(directory)
    # The shared rubert-tiny2 directory (the `tok` of all cased parity tests above) has
    # do_lower_case false too.
    assert (tok.lowercase, tok.strip_accents) == (False, None)
    assert [tok.id_to_token(i) for i in tok.tokenize("Ёлка ЙОД").to_list()[0]] == [
        "Ё", "##лка", "Й", "##О", "##Д"]


@pytest.mark.parametrize("config,tokenizer_json_lowercase,expected,warns", [
    ({"do_lower_case": True}, None, (True, None), False),  # sbert_large_nlu_ru
    ({"do_lower_case": True, "strip_accents": False}, None, (True, False), False),
    ({"do_lower_case": False, "strip_accents": True}, None, (False, True), False),
    ({}, None, (True, None), False),
    # transformers' BertTokenizerFast rebuilds the normalizer from tokenizer_config.json (or
    # its do_lower_case=True default) and ignores tokenizer.json's: so do we, with a warning.
    (None, False, (True, None), True),
    ({"do_lower_case": False}, True, (False, None), True),
    ({"do_lower_case": False}, False, (False, None), False),
    ({"tokenizer_class": "BertTokenizerFast"}, False, (True, None), True),
])
def test_normalizer_settings_follow_transformers(tmp_path, config, tokenizer_json_lowercase,
                                                 expected, warns):
    directory = _model_dir(tmp_path, "model", config=config,
                           tokenizer_json_lowercase=tokenizer_json_lowercase)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = RuBertTokenizer.from_pretrained(directory)
    assert any("ignores it" in str(w.message) for w in caught) == warns
    assert (ours.lowercase, ours.strip_accents) == expected == _hf_normalizer(directory)


def test_generic_fast_tokenizer_config_uses_tokenizer_json(tmp_path):
    """tokenizer_class PreTrainedTokenizerFast: AutoTokenizer takes tokenizer.json as is."""
    directory = _model_dir(tmp_path, "generic", tokenizer_json_lowercase=False,
                           config={"tokenizer_class": "PreTrainedTokenizerFast",
                                   "do_lower_case": True})
    ours = RuBertTokenizer.from_pretrained(directory)
    assert (ours.lowercase, ours.strip_accents) == (False, None)
    assert _hf_normalizer(directory, auto=True) == (False, None)
    # Explicit arguments win over the files.
    assert RuBertTokenizer.from_pretrained(directory, lowercase=True).lowercase is True


def test_uncased_save_pretrained_round_trip_and_hf_loads_it(tok, tmp_path):
    small = tok.vocabulary[:SMALL_VOCAB_SIZE]
    for lowercase, strip_accents in UNCASED_MODES:
        directory = tmp_path / f"saved_{lowercase}_{strip_accents}"
        RuBertTokenizer(small, lowercase=lowercase, strip_accents=strip_accents
                        ).save_pretrained(directory)
        with open(directory / "tokenizer_config.json", encoding="utf-8") as f:
            config = json.load(f)
        assert (config["do_lower_case"], config["strip_accents"]) == (lowercase, strip_accents)
        again = RuBertTokenizer.from_pretrained(directory)
        assert (again.lowercase, again.strip_accents) == (lowercase, strip_accents) \
            == _hf_normalizer(directory)


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
    no_cjk = tmp_path / "no_cjk"
    no_cjk.mkdir()
    (no_cjk / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", encoding="utf-8")
    (no_cjk / "tokenizer_config.json").write_text('{"tokenize_chinese_chars": false}',
                                                  encoding="utf-8")
    with pytest.raises(NotImplementedError, match="tokenizer_config.json"):
        RuBertTokenizer.from_pretrained(no_cjk)
    with pytest.raises(TypeError, match="lowercase"):
        RuBertTokenizer(tok.vocabulary, lowercase="yes")
    with pytest.raises(TypeError, match="strip_accents"):
        RuBertTokenizer(tok.vocabulary, strip_accents=1)
    with pytest.raises(TypeError, match="ids"):
        tok.detokenize(tf.constant([[0.5]]))


def test_char_class_table_equals_the_range_table_on_every_code_point():
    """The two-level lookup table (fast path) gives the class the sorted range table gives, for all
    1,114,112 code points."""
    import bisect

    from rubert_tf import tokenizer as module

    every = np.arange(0x110000, dtype=np.int32)
    got = module._char_class(tf.constant(every)).numpy()
    starts = np.asarray(module._CLASS_STARTS)
    expected = np.asarray(module._CLASS_VALUES)[np.searchsorted(starts, every, side="right") - 1]
    assert len(module._CLASS_STARTS) > 100 and len(set(module._CLASS_VALUES)) == 4
    np.testing.assert_array_equal(got, expected)
    assert bisect.bisect_right(module._CLASS_STARTS, ord(" ")) and got[ord(" ")] == module._WHITESPACE
