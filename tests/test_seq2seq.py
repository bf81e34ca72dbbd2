"""RuBertSeq2Seq against transformers' EncoderDecoderModel (bert2bert) on a random tiny model: logits,
greedy and beam-search tokens, checkpoint names both ways; and the search itself: cache on/off,
beam of one vs greedy, batch vs single, the loss."""

import os

import numpy as np
import pytest
import tensorflow as tf
import torch
import transformers

import rubert_tf as rt
from reference_models import copy_vocab
from rubert_tf.models import generation
from rubert_tf.models.generation import GenerationConfig

START, EOS, PAD = 2, 3, 0  # rubert-tiny2's [CLS], [SEP], [PAD]
SIZES = dict(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             max_position_embeddings=64)
# Beam settings that exercise every stopping rule of HF's beam search.
SEARCHES = [
    dict(max_length=16),
    dict(max_length=16, num_beams=3),
    dict(max_length=16, num_beams=4, length_penalty=2.0, early_stopping=True),
    dict(max_length=16, num_beams=4, length_penalty=0.5, early_stopping="never", no_repeat_ngram_size=2,
         min_length=4),
]


def random_encoder_decoder(seed=0, eos_boost=7.0):
    """EncoderDecoderModel(BertModel, BertLMHeadModel) with O(1) random weights; [SEP] made likely enough
    that hypotheses end at different lengths (so finished-beam bookkeeping matters)."""
    torch.manual_seed(seed)
    encoder = transformers.BertConfig(**SIZES)
    decoder = transformers.BertConfig(**SIZES, is_decoder=True, add_cross_attention=True)
    config = transformers.EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.eos_token_id, config.pad_token_id = START, EOS, PAD
    model = transformers.EncoderDecoderModel(config=config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "LayerNorm.weight" in name:
                parameter.copy_(1 + 0.2 * torch.randn_like(parameter))
            elif parameter.ndim == 1:
                parameter.normal_(0, 0.2)
            elif "embeddings" in name:
                parameter.normal_(0, 0.5)
            else:
                parameter.normal_(0, parameter.shape[1] ** -0.5)
        model.decoder.cls.predictions.bias[EOS] += eos_boost
    return model


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("bert2bert"))
    model = random_encoder_decoder()
    model.save_pretrained(directory)
    copy_vocab(directory, SIZES["vocab_size"])
    return model, directory


@pytest.fixture(scope="module")
def ours(reference):
    return rt.RuBertSeq2Seq.from_pretrained(reference[1])


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(1)
    ids = rng.integers(5, SIZES["vocab_size"], (6, 9)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = PAD
    return ids, mask


def hf_generate(model, ids, mask, **kwargs):
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor(ids).long(), attention_mask=torch.tensor(mask).long(), **kwargs)
    # HF fills the tail of short beam hypotheses with eos when pad_token_id is 0: cut at the first eos.
    return [row[:row.index(EOS) + 1] if EOS in row else row for row in out.numpy().tolist()]


def test_loads_hf_encoder_decoder_and_logits_match(reference, ours, batch):
    model, _ = reference
    ids, mask = batch
    rng = np.random.default_rng(2)
    decoder_ids = rng.integers(5, SIZES["vocab_size"], (6, 7)).astype(np.int32)
    decoder_ids[:, 0] = START
    decoder_mask = np.ones_like(decoder_ids)
    decoder_mask[3, 5:] = 0
    logits = np.asarray(ours({"encoder_token_ids": ids, "encoder_padding_mask": mask,
                              "decoder_token_ids": decoder_ids, "decoder_padding_mask": decoder_mask}))
    with torch.no_grad():
        expected = model(input_ids=torch.tensor(ids).long(), attention_mask=torch.tensor(mask).long(),
                         decoder_input_ids=torch.tensor(decoder_ids).long(),
                         decoder_attention_mask=torch.tensor(decoder_mask).long()).logits.numpy()
    assert logits.shape == expected.shape == (6, 7, SIZES["vocab_size"])
    diff = np.abs(logits - expected)[decoder_mask.astype(bool)].max()
    print(f"bert2bert logits max abs diff vs transformers: {diff:.2e}")
    assert diff <= 1e-4
    assert (ours.config.decoder_start_token_id, ours.config.eos_token_id, ours.config.pad_token_id) == (START, EOS, PAD)


@pytest.mark.parametrize("search", SEARCHES, ids=["greedy", "beam3", "beam4-lp2-early", "beam4-never-ngram-min"])
def test_generation_is_token_identical_to_transformers(reference, ours, batch, search):
    ids, mask = batch
    got = ours.generate_ids(ids, mask, **search)
    expected = hf_generate(reference[0], ids, mask, **search)
    assert got == expected
    lengths = [len(row) for row in got]
    # The model must both end some hypotheses early and run others to max_length.
    assert min(lengths) < search["max_length"] and any(row[-1] == EOS for row in got), lengths


def test_cache_on_and_off_give_identical_tokens(ours, batch):
    # Beam search: the cache is also reordered between beams every step.
    ids, mask = batch
    search = SEARCHES[2]
    assert ours.generate_ids(ids, mask, use_cache=False, **search) == ours.generate_ids(ids, mask, **search)


def test_sampling_is_seeded_and_top_k_1_is_greedy(ours, batch):
    ids, mask = batch
    sample = dict(max_length=16, do_sample=True, temperature=1.5, top_p=0.9)
    first = ours.generate_ids(ids, mask, seed=7, **sample)
    assert ours.generate_ids(ids, mask, seed=7, **sample) == first
    assert any(ours.generate_ids(ids, mask, seed=seed, **sample) != first for seed in (8, 9, 10))
    greedy = ours.generate_ids(ids, mask, max_length=16)  # traced already by the parity test
    assert ours.generate_ids(ids, mask, seed=3, max_length=16, do_sample=True, top_k=1, temperature=0.7) == greedy


def test_beam_search_with_one_beam_equals_greedy(ours, batch):
    ids, mask = batch
    config = GenerationConfig(max_length=16, num_beams=1, early_stopping=True)

    @tf.function(autograph=False)
    def one_beam(token_ids, padding_mask):
        encoded = ours.parts.encode(token_ids, padding_mask, training=False)
        context, caches = ours._decoder_state(encoded, padding_mask, config.max_length, True)
        start = tf.concat([tf.fill([tf.shape(token_ids)[0], 1], START),
                           tf.fill([tf.shape(token_ids)[0], config.max_length - 1], PAD)], 1)
        return generation.beam_search(ours._next_logits_fn(context, True), caches, start, config, EOS, PAD)[:2]

    sequences, lengths = one_beam(tf.constant(ids), tf.constant(mask))
    beam = [row[:n] for row, n in zip(sequences.numpy().tolist(), lengths.numpy())]
    assert beam == ours.generate_ids(ids, mask, max_length=16)


def test_batch_and_single_generation_agree(ours, batch):
    ids, mask = batch
    search = SEARCHES[1]
    together = ours.generate_ids(ids, mask, **search)
    for row in range(len(ids)):
        length = int(mask[row].sum())
        assert ours.generate_ids(ids[row:row + 1, :length], **search) == [together[row]]


def test_save_pretrained_is_what_transformers_loads(reference, ours, batch, tmp_path):
    model, _ = reference
    tokenizer = rt.RuBertTokenizer(os.path.join(reference[1], "vocab.txt"))
    ours.save_pretrained(str(tmp_path), tokenizer=tokenizer)
    loaded, info = transformers.EncoderDecoderModel.from_pretrained(str(tmp_path), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    # Every HF weight name (but the tied decoder copies) is ours, and nothing else.
    tied = {"decoder.cls.predictions.decoder.weight", "decoder.cls.predictions.decoder.bias"}
    assert set(ours.hf_weight_map()) == set(model.state_dict()) - tied
    assert loaded.generation_config.decoder_start_token_id == START
    ids, mask = batch
    assert hf_generate(loaded.eval(), ids, mask, max_length=10) == ours.generate_ids(ids, mask, max_length=10)
    assert os.path.isfile(tmp_path / "vocab.txt")


def test_warm_start_from_rubert_is_bert2bert(tiny_checkpoint):
    s2s = rt.RuBertSeq2Seq.from_pretrained(tiny_checkpoint)
    tokenizer = s2s.tokenizer
    assert tokenizer is not None
    assert (s2s.config.decoder_start_token_id, s2s.config.eos_token_id, s2s.config.pad_token_id) == (
        tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id)
    reference = transformers.EncoderDecoderModel.from_encoder_decoder_pretrained(tiny_checkpoint, tiny_checkpoint)
    hf = reference.state_dict()
    weights = {name: np.asarray(variable.numpy()).T if transpose else np.asarray(variable.numpy())
               for name, (variable, transpose) in s2s.hf_weight_map().items()}
    assert set(weights) == set(hf) - {"decoder.cls.predictions.decoder.weight", "decoder.cls.predictions.decoder.bias"}
    for name, value in weights.items():
        if "crossattention" in name or name.startswith("decoder.cls."):
            continue  # new in bert2bert (the checkpoint is a BertModel: no MLM head)
        np.testing.assert_array_equal(value, hf[name].numpy(), err_msg=name)
    # Decoder output tied to the decoder's word embeddings: one variable.
    assert s2s.parts.token_embedding.embeddings is s2s.hf_weight_map()[
        "decoder.bert.embeddings.word_embeddings.weight"][0]


def test_loss_smooths_labels_and_ignores_padding():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 4, 7)).astype(np.float32)
    labels = np.array([[1, 2, 3, -100], [4, -100, -100, -100]], dtype=np.int32)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    real = labels != -100
    nll = -np.take_along_axis(log_probs, np.where(real, labels, 0)[..., None], -1)[..., 0]
    for eps in (0.0, 0.1):
        expected = ((1 - eps) * nll - eps * log_probs.mean(-1))[real].mean()
        loss = float(rt.RuBertSeq2Seq.default_loss(label_smoothing=eps)(labels, logits))
        np.testing.assert_allclose(loss, expected, rtol=1e-5)
    changed = logits.copy()
    changed[~real] += 100.0  # logits at ignored positions must not matter
    loss = rt.RuBertSeq2Seq.default_loss(0.1)
    np.testing.assert_allclose(float(loss(labels, changed)), float(loss(labels, logits)), rtol=1e-6)


def test_bad_generation_arguments_are_named(ours, batch):
    ids, mask = batch
    with pytest.raises(ValueError, match="num_beams"):
        ours.generate_ids(ids, mask, num_beams=0)
    with pytest.raises(ValueError, match="early_stopping"):
        ours.generate_ids(ids, mask, num_beams=2, early_stopping="sometimes")
    with pytest.raises(ValueError, match="max_position_embeddings"):
        ours.generate_ids(ids, mask, max_length=65)
    with pytest.raises(ValueError, match="encoder_padding_mask"):
        ours.generate_ids(ids, mask[:, :3])
