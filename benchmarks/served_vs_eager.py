"""Served answers vs eager answers, every task, on real Russian data (not a test: prints a table).

    python benchmarks/served_vs_eager.py [--rows 200]

For each task a small model with random weights and the real rubert-tiny2 vocabulary (its settings
stored as `finetune` stores them) is exported with `rt.export`, loaded back with
`tf.saved_model.load` (what TF Serving runs), and asked the same inputs as the Python API:
classify (RuSentNE sentence + entity pairs), extract_entities (factRuEval sentences), answer
(XQuAD-ru, contexts longer than one window), encode (ruslit paragraphs) and generate (NTREX ru).
It prints how many answers are equal and the largest difference of the floats.
"""

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import rubert_tf as rt  # noqa: E402
from rubert_tf.data.readers import read_conll  # noqa: E402


def tiny_config(tokenizer):
    return rt.RuBertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=128, max_position_embeddings=512)


def served(model, tokenizer, work, **inputs):
    path = rt.export(model, tokenizer, os.path.join(work, type(model).__name__), warmup=False)
    function = tf.saved_model.load(path).signatures["serving_default"]
    return {key: value.numpy() for key, value in function(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def classification(tokenizer, rows, work):
    with open(os.path.join(DATA, "rusentne2023", "train_data.csv"), encoding="utf-8") as f:
        lines = [line.rstrip("\n").split("\t") for line in f][1:rows + 1]
    texts, pairs = [line[0] for line in lines], [line[1] for line in lines]
    model = rt.RuBertClassifier(tiny_config(tokenizer), labels=["-1", "0", "1"])
    model.tokenizer = tokenizer
    model.config.extra["task_settings"] = {"task": "classification", "text_pair": True, "max_length": 128}
    eager = model.classify(texts, pairs, batch_size=len(texts))
    out = served(model, tokenizer, work, text=texts, text_pair=pairs)
    equal = sum(o.decode() == e["label"] for o, e in zip(out["label"], eager))
    probabilities = np.array([[e["probabilities"][n] for n in model.labels] for e in eager])
    return f"{equal}/{len(texts)} labels", float(np.abs(out["probabilities"] - probabilities).max())


def ner(tokenizer, rows, work):
    sentences = read_conll(os.path.join(DATA, "factrueval2016", "dev.bio"), strict=False)[:rows]
    texts = [" ".join(s["tokens"]) for s in sentences]
    labels = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "LOC", "ORG"]  # IOBES and bare tags mixed
    model = rt.RuBertTokenClassifier(tiny_config(tokenizer), labels=labels)
    model.tokenizer = tokenizer
    eager = model.extract_entities(texts, batch_size=len(texts))
    out = served(model, tokenizer, work, text=texts)
    equal = entities = 0
    for row, result in enumerate(eager):
        count = int(out["entity_count"][row])
        got = [(int(out["entity_start"][row][i]), int(out["entity_end"][row][i]), out["entity_label"][row][i].decode())
               for i in range(count)]
        want = [(e["start"], e["end"], e["label"]) for e in result["entities"]]
        equal += got == want
        entities += len(want)
    return f"{equal}/{len(texts)} sentences ({entities} entities)", 0.0


def qa(tokenizer, rows, work):
    with open(os.path.join(DATA, "xquad-ru", "xquad.ru.part1.json"), encoding="utf-8") as f:
        data = json.load(f)["data"]
    questions, contexts = [], []
    for article in data:
        for paragraph in article["paragraphs"]:
            for item in paragraph["qas"]:
                questions.append(item["question"])
                contexts.append(paragraph["context"])
    questions, contexts = questions[:rows], contexts[:rows]
    model = rt.RuBertQuestionAnswerer(tiny_config(tokenizer))
    model.tokenizer = tokenizer
    # Short windows, so most contexts take several (the strided windows are part of the graph).
    model.config.extra["task_settings"] = {"task": "qa", "max_length": 96, "stride": 32}
    eager = model.answer(questions, contexts, batch_size=len(questions))
    out = served(model, tokenizer, work, question=questions, context=contexts)
    equal = sum(o.decode() == e["answer"] for o, e in zip(out["answer"], eager))
    scores = np.array([e["score"] for e in eager], np.float64)
    return f"{equal}/{len(questions)} answers", float(np.abs(out["score"] - scores).max())


def sentence(tokenizer, rows, work):
    with open(os.path.join(DATA, "ruslit", "ruslit_train.txt"), encoding="utf-8") as f:
        texts = [line.strip() for line in f if line.strip()][:rows]
    model = rt.RuBertSentenceEncoder(tiny_config(tokenizer))
    model.tokenizer = tokenizer
    eager = model.encode(texts, batch_size=len(texts))
    out = served(model, tokenizer, work, text=texts)
    return f"{len(texts)} vectors", float(np.abs(out["embedding"] - eager).max())


def seq2seq(tokenizer, rows, work):
    with open(os.path.join(DATA, "ntrex-en-ru", "train.ru"), encoding="utf-8") as f:
        texts = [line.strip() for line in f][:min(rows, 32)]
    model = rt.RuBertSeq2Seq.from_scratch(tokenizer=tokenizer, hidden_size=64, num_layers=1, num_heads=4,
                                          intermediate_size=128, max_length=64)
    model.tokenizer = tokenizer
    model.config.extra["task_settings"] = {"task": "seq2seq", "max_length": 32, "num_beams": 2,
                                           "generation_max_length": 12}
    from rubert_tf.tasks import get_task

    eager = get_task("seq2seq").generate(model, texts, batch_size=len(texts))
    out = served(model, tokenizer, work, text=texts)
    equal = sum(o.decode() == e for o, e in zip(out["output"], eager))
    return f"{equal}/{len(texts)} outputs (beam 2)", 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200, help="inputs per task (seq2seq: at most 32)")
    args = parser.parse_args()
    tokenizer = rt.RuBertTokenizer.from_pretrained(os.path.join(DATA, "rubert-tiny2"))
    print(f"| task | equal (served vs eager) | max abs float difference | seconds |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for name, run in (("classification", classification), ("ner", ner), ("qa", qa), ("sentence", sentence),
                          ("seq2seq", seq2seq)):
            started = time.time()
            equal, difference = run(tokenizer, args.rows, work)
            print(f"| {name} | {equal} | {difference:.2e} | {time.time() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
