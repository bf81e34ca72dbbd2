"""rubert_tf.training.runner.TrainingRun, the run finetune and pretrain share: it refuses an output folder
that already holds a model unless overwrite=True, and restores the Keras dtype policy it found."""

import json
import os
import shutil

import keras
import pytest

from rubert_tf.training.runner import TrainingRun, check_output_folder


def _holding_a_model(directory, source):
    os.makedirs(directory)
    shutil.copy(os.path.join(source, "config.json"), directory)
    return str(directory)


def test_output_folder_rules(tmp_path):
    out = str(tmp_path)
    check_output_folder(out)  # empty: fine
    (tmp_path / "model.safetensors").write_bytes(b"a good model")
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        check_output_folder(out)
    with pytest.raises(FileExistsError, match="pass overwrite=True"):  # nothing to resume: still refused
        check_output_folder(out, resume=True)
    check_output_folder(out, overwrite=True)
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "ckpt-000000003.json").write_text("{}")
    with pytest.raises(FileExistsError, match="--resume"):
        check_output_folder(out, overwrite=True)  # an interrupted run is never silently replaced
    check_output_folder(out, resume=True)  # continuing it is what resume is for


def test_finetune_and_pretrain_refuse_an_out_that_holds_a_model(tiny_checkpoint, tmp_path):
    from rubert_tf.finetune import finetune
    from rubert_tf.pretraining import pretrain

    out = _holding_a_model(tmp_path / "good_model", tiny_checkpoint)
    with pytest.raises(FileExistsError) as refused:
        finetune("classification", model=tiny_checkpoint, train=str(tmp_path / "train.csv"), out=out)
    assert out in str(refused.value) and "pass overwrite=True (--overwrite)" in str(refused.value)
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        pretrain(train=str(tmp_path / "shards"), out=out, model=tiny_checkpoint)
    assert os.listdir(out) == ["config.json"]  # untouched


def test_finetune_overwrite_replaces_the_model_and_restores_the_dtype_policy(tiny_checkpoint, tmp_path):
    from rubert_tf.finetune import finetune

    train = tmp_path / "train.csv"
    train.write_text("text,label\nочень хорошо,pos\nочень плохо,neg\nвсё хорошо,pos\nвсё плохо,neg\n",
                     encoding="utf-8")
    out = _holding_a_model(tmp_path / "old_model", tiny_checkpoint)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")  # what the caller had
    try:
        metrics = finetune("classification", model=tiny_checkpoint, train=str(train), out=out, overwrite=True,
                           epochs=1, batch_size=4, max_length=16, backup_every=None, verbose=0)
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"  # found it, left it
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert metrics["mixed_precision"] == "float32" and metrics["optimizer_steps"] == 1
    config = json.load(open(os.path.join(out, "config.json"), encoding="utf-8"))
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert {"model.safetensors", "metrics.json", "vocab.txt"} <= set(os.listdir(out))


def test_a_failed_run_restores_the_dtype_policy(tmp_path):
    keras.mixed_precision.set_global_policy("float32")
    with pytest.raises(RuntimeError, match="boom"):
        with TrainingRun(str(tmp_path / "run"), mixed_precision="bf16") as run:
            assert keras.mixed_precision.global_policy().name == "mixed_bfloat16" == run.policy
            raise RuntimeError("boom")
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(ValueError, match="mixed precision must be"):
        TrainingRun(str(tmp_path / "run"), mixed_precision="fp8")
