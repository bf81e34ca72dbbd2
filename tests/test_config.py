"""RuBertConfig: HF/TF1 json in and out, presets against the real published configs."""

import json

import pytest

from rubert_tf import PRESETS, RuBertConfig

SHARED_TINY2 = "../shared/data/rubert-tiny2"


@pytest.fixture
def shared_tiny2(request):
    return str(request.config.rootpath / SHARED_TINY2)


def test_preset_matches_the_real_rubert_tiny2_config(shared_tiny2):
    real = RuBertConfig.from_pretrained(shared_tiny2)
    preset = RuBertConfig.from_pretrained("cointegrated/rubert-tiny2")
    for field in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                  "max_position_embeddings", "type_vocab_size", "hidden_act", "layer_norm_eps", "pad_token_id"):
        assert getattr(real, field) == getattr(preset, field), field
    assert real.extra["emb_size"] == 312


def test_rubert_base_numbers():
    cfg = RuBertConfig.from_pretrained("DeepPavlov/rubert-base-cased")
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads,
            cfg.intermediate_size, cfg.max_position_embeddings) == (119547, 768, 12, 12, 3072, 512)
    large = RuBertConfig.from_pretrained("ai-forever/ruBert-large")
    assert (large.hidden_size, large.num_hidden_layers, large.num_attention_heads, large.vocab_size) == (
        1024, 24, 16, 120138)
    assert set(PRESETS) >= {"DeepPavlov/rubert-base-cased-sentence", "cointegrated/rubert-tiny",
                            "ai-forever/ruBert-base", "ai-forever/sbert_large_nlu_ru"}


def test_hf_json_round_trip_keeps_unknown_keys(tmp_path, shared_tiny2):
    cfg = RuBertConfig.from_pretrained(shared_tiny2)
    cfg.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    original = json.loads(open(f"{shared_tiny2}/config.json").read())
    for key, value in original.items():
        if key != "architectures":
            assert written[key] == value, key
    assert RuBertConfig.from_pretrained(str(tmp_path)) == cfg


def test_tf1_bert_config_round_trip(tmp_path):
    cfg = RuBertConfig.from_pretrained("DeepPavlov/rubert-base-cased")
    cfg.save_pretrained(tmp_path, tf1=True)
    written = json.loads((tmp_path / "bert_config.json").read_text())
    # google-research's BertConfig keys only.
    assert set(written) == {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                            "intermediate_size", "hidden_act", "hidden_dropout_prob",
                            "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
                            "initializer_range", "layer_norm_eps"}
    loaded = RuBertConfig.from_pretrained(str(tmp_path))
    assert loaded.vocab_size == 119547 and loaded.hidden_act == "gelu"


def test_bad_configs_fail_clearly(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        RuBertConfig.from_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match="multiple of num_attention_heads"):
        RuBertConfig(hidden_size=100, num_attention_heads=12)
    with pytest.raises(ValueError, match="hidden_act"):
        RuBertConfig(hidden_act="mystery")
    with pytest.raises(ValueError, match="emb_size"):
        RuBertConfig(hidden_size=312, num_attention_heads=12, extra={"emb_size": 128})
    with pytest.raises(ValueError, match="vocab_size"):
        RuBertConfig(vocab_size=0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        RuBertConfig.from_pretrained(str(empty))
