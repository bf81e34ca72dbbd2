"""pretrain(objective="rtd"): ELECTRA pretraining on a tiny ruslit corpus through the CLI, the Electra
layout it saves and fine-tuning from it, an interrupted run resumed exactly, and MirroredStrategy + bf16."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import SHARED_DATA

RUSLIT = os.path.join(SHARED_DATA, "ruslit", "ruslit_train.txt")
RUCOLA_TRAIN = os.path.join(SHARED_DATA, "rucola", "in_domain_train.csv")
BODY = ["--num-layers", "1", "--hidden-size", "64", "--num-heads", "4", "--intermediate-size", "128"]


def _corpus(root):
    """A 1,000-word vocab learnt on a ruslit slice; that slice (T=64) for training, held-out lines for eval."""
    import rubert_tf as rt
    from rubert_tf import cli
    from rubert_tf.pretraining import prepare_corpus

    with open(RUSLIT, encoding="utf-8") as f:
        lines = f.read().split("\n")
    root = str(root)
    for name, text in (("train", lines[:1500]), ("heldout", lines[30000:30200])):
        with open(os.path.join(root, f"{name}.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(text))
    assert cli.main(["train-vocab", os.path.join(root, "train.txt"), "--vocab-size", "1000",
                     "--out", os.path.join(root, "vocab.txt")]) == 0
    tokenizer = rt.RuBertTokenizer(os.path.join(root, "vocab.txt"))
    for name in ("train", "heldout"):
        prepare_corpus(os.path.join(root, f"{name}.txt"), os.path.join(root, name), tokenizer, max_length=64,
                       progress=False)
    return {"train": os.path.join(root, "train"), "heldout": os.path.join(root, "heldout")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _corpus(tmp_path_factory.mktemp("rtd_corpus"))


def test_rtd_cli_run_saves_electra_and_finetune_loads_its_discriminator(corpus, tmp_path, capsys):
    from safetensors.numpy import load_file

    import rubert_tf as rt
    from rubert_tf import cli
    from rubert_tf.finetune import finetune

    out = tmp_path / "rtd"
    code = cli.main(["pretrain", "--train", corpus["train"], "--eval", corpus["heldout"], "--out", str(out),
                     "--config", "cointegrated/rubert-tiny2", *BODY, "--objective", "rtd",
                     "--generator-hidden-size", "16", "--rtd-weight", "20", "--batch-size", "16", "--steps", "60",
                     "--checkpoint-every", "60", "--learning-rate", "2e-3", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    metrics = json.load(open(out / "metrics.json", encoding="utf-8"))
    before, after = metrics["eval_before"], metrics["eval_after"]
    print(f"\nheld-out RTD {json.dumps(before)} -> {json.dumps(after)}")
    assert metrics["objective"] == "rtd"
    assert set(after) == {"mlm_loss", "mlm_accuracy", "rtd_loss", "rtd_accuracy", "rtd_recall", "rtd_auc"}
    assert before["mlm_loss"] == pytest.approx(np.log(1000), abs=0.3)  # random generator: ~uniform
    assert after["mlm_loss"] < before["mlm_loss"] - 0.5
    assert after["rtd_loss"] < before["rtd_loss"] - 0.1
    config = json.load(open(out / "config.json"))
    generator = json.load(open(out / "generator" / "config.json"))
    assert (config["model_type"], config["architectures"]) == ("electra", ["ElectraForPreTraining"])
    assert (generator["architectures"], generator["hidden_size"]) == (["ElectraForMaskedLM"], 16)
    assert {"vocab.txt", "tokenizer_config.json"} <= set(os.listdir(out)) & set(os.listdir(out / "generator"))
    tensors = load_file(str(out / "model.safetensors"))
    assert "discriminator_predictions.dense_prediction.weight" in tensors

    # Fine-tuning reads the discriminator as its encoder: with a learning rate of ~0 it keeps its weights.
    ft = tmp_path / "classifier"
    result = finetune("classification", model=str(out), train=RUCOLA_TRAIN, out=str(ft),
                      options={"text_column": "sentence", "label_column": "acceptable"}, epochs=1, max_steps=2,
                      batch_size=8, max_length=32, learning_rate=1e-9, weight_decay=0.0, verbose=0)
    assert np.isfinite(result["train_loss_last_epoch"])
    classifier = rt.RuBertClassifier.from_pretrained(str(ft))
    assert json.load(open(ft / "config.json"))["model_type"] == "bert"  # saved as a BERT classifier again
    encoder = classifier.encoder.hf_weight_map()
    for name in ("embeddings.word_embeddings.weight", "encoder.layer.0.output.dense.weight"):
        variable, transpose = encoder[name]
        value = variable.numpy().T if transpose else variable.numpy()
        np.testing.assert_allclose(value, tensors["electra." + name], atol=1e-5, err_msg=name)


def test_rtd_refuses_sentence_order(corpus, tmp_path):
    from rubert_tf.pretraining import pretrain

    with pytest.raises(ValueError, match="sentence_order"):
        pretrain(train=corpus["train"], out=str(tmp_path / "x"), config="cointegrated/rubert-tiny2",
                 objective="rtd", sentence_order=True)
    with pytest.raises(ValueError, match="objective"):
        pretrain(train=corpus["train"], out=str(tmp_path / "x"), config="cointegrated/rubert-tiny2", objective="elm")


def test_interrupted_rtd_run_resumes_to_the_uninterrupted_weights(corpus, tmp_path, monkeypatch):
    import keras
    from safetensors.numpy import load_file

    import rubert_tf.training.runner as module
    from rubert_tf.pretraining import pretrain

    kwargs = dict(train=corpus["train"], config="cointegrated/rubert-tiny2", objective="rtd",
                  overrides=dict(num_layers=1, hidden_size=32, num_heads=2, intermediate_size=64), batch_size=8,
                  steps=8, checkpoint_every=4, backup_every=3, learning_rate=1e-3, seed=5, verbose=0)

    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == 7:
                raise RuntimeError("simulated crash after step 7")

    original = module.training_callbacks
    monkeypatch.setattr(module, "training_callbacks", lambda *args, **kw: original(*args, **kw) + [Crash()])
    run = str(tmp_path / "run")
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain(out=run, **kwargs)
    monkeypatch.setattr(module, "training_callbacks", original)
    assert "ckpt-000000006.json" in os.listdir(os.path.join(run, "backup"))

    # Resumed from the backup of step 6 (mid-epoch), the sampler's state with it: the same weights as a run
    # never interrupted, generator included.
    metrics = pretrain(out=run, resume=True, **kwargs)
    assert metrics["resumed_from_step"] == 6
    pretrain(out=str(tmp_path / "uninterrupted"), **kwargs)
    for part in ("model.safetensors", os.path.join("generator", "model.safetensors")):
        resumed = load_file(os.path.join(run, part))
        uninterrupted = load_file(str(tmp_path / "uninterrupted" / part))
        assert resumed.keys() == uninterrupted.keys()
        for name in resumed:
            np.testing.assert_allclose(resumed[name], uninterrupted[name], atol=1e-6, err_msg=f"{part}: {name}")
    assert not os.path.exists(os.path.join(run, "backup"))


def test_rtd_trains_under_mirrored_strategy_with_bf16(corpus, tmp_path):
    from processes import subprocess_env

    result = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), corpus["train"], str(tmp_path / "out"),
                           str(result)], env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    metrics = json.loads(result.read_text())
    assert metrics["replicas"] == 2 and metrics["mixed_precision"] == "mixed_bfloat16"
    assert np.isfinite(metrics["train_loss_first_epoch"]) and np.isfinite(metrics["train_loss_last_epoch"])
    assert metrics["train_loss_last_epoch"] < metrics["train_loss_first_epoch"]
    assert json.load(open(tmp_path / "out" / "config.json"))["model_type"] == "electra"
    # The sampler's state is mirrored: with the same logits, replicas must still draw their own replacements.
    first, second = (np.asarray(samples) for samples in metrics["replica_samples"])
    assert first.shape == (4, 20) and (first[:, 1:17] != second[:, 1:17]).mean() > 0.5


def _mirrored_script(train, out, result_path):
    from rubert_tf.pretraining import pretrain
    from rubert_tf.training.strategy import split_cpu

    split_cpu(2)  # before any TF work
    metrics = pretrain(train=train, out=out, config="cointegrated/rubert-tiny2", objective="rtd",
                       overrides=dict(num_layers=1, hidden_size=32, num_heads=2, intermediate_size=64), batch_size=8,
                       steps=12, checkpoint_every=6, learning_rate=2e-3, strategy="mirrored", num_logical_cpus=2,
                       mixed_precision="bf16", verbose=0)
    metrics["replica_samples"] = _samples_per_replica()
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(metrics, f)


def _samples_per_replica():
    """The replacements each of 2 Mirrored replicas draws for the same (flat) logits, in one training call."""
    import tensorflow as tf

    from rubert_tf.models.electra import SampleReplacements

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        layer = SampleReplacements(seed=7)
    logits = tf.zeros([4, 16, 50])  # uniform over 50 tokens at 16 positions of 4 rows
    token_ids = tf.zeros([4, 20], tf.int32)
    positions = tf.tile(tf.range(1, 17)[tf.newaxis], [4, 1])
    drawn = strategy.run(tf.function(lambda: layer(logits, token_ids, positions, training=True)))
    return [tensor.numpy().tolist() for tensor in strategy.experimental_local_results(drawn)]


if __name__ == "__main__":
    _mirrored_script(*sys.argv[1:4])
