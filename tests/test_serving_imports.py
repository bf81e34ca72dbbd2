"""The server reads SavedModels only, as TF Serving does (DESIGN: it imports nothing of models, training
or data), so what `rubert-tf serve` answers locally is what the real binary would answer."""

import subprocess
import sys


def test_server_imports_no_models_training_or_data():
    code = ("import sys, rubert_tf.serving.server\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[:2] in "
            "(['rubert_tf', 'models'], ['rubert_tf', 'training'], ['rubert_tf', 'data'], ['rubert_tf', 'tokenizer']))\n"
            "print(bad)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_public_names_still_resolve_lazily():
    code = ("import rubert_tf as rt\n"
            "assert callable(rt.export) and rt.RuBertEncoder.__name__ == 'RuBertEncoder'\n"
            "assert rt.RuBertSeq2Seq.__name__ == 'RuBertSeq2Seq' and callable(rt.train_vocab)\n"
            "missing = [name for name in rt.__all__ if not hasattr(rt, name)]\n"
            "assert not missing, missing\n"
            "try:\n    rt.NoSuchModel\nexcept AttributeError as error:\n    assert 'NoSuchModel' in str(error)\n"
            "else:\n    raise SystemExit('no AttributeError')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
