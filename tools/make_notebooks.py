"""Write notebooks/*.ipynb from the cell sources below (outputs stripped), so all notebooks share one
header: Colab badge, parameters, install cell, device check and the offline tiny checkpoint.

    /work/venv/bin/python tools/make_notebooks.py            # (re)write notebooks/
    /work/venv/bin/python tools/make_notebooks.py --check    # exit 1 if notebooks/ differ from this file

Parameters cell (tagged "parameters", as papermill expects): SMALL and OFFLINE default to True when the
environment has CI=true. SMALL: tiny model, a few steps, minutes on a CPU. OFFLINE: nothing is
downloaded; a tiny random checkpoint is built in the notebook from the package's sample corpus.
"""

import argparse
import os
import sys

import nbformat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "notebooks")
REPO_URL = "https://github.com/<org>/rubert_tf"
COLAB = "https://colab.research.google.com/github/<org>/rubert_tf/blob/main/notebooks/{name}"
BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def parameters(model="cointegrated/rubert-tiny2", extra=""):
    return f'''# Parameters (papermill / nbclient may override them).
# On Colab the defaults load a real checkpoint from the HuggingFace hub and use the GPU if there is one.
# SMALL: tiny model and a few steps; OFFLINE: nothing is downloaded. Both are on when CI=true.
import os

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SMALL = CI
OFFLINE = CI
MODEL = "{model}"   # or "DeepPavlov/rubert-base-cased", or a local checkpoint directory
REPO = "{REPO_URL}"   # where Colab installs rubert_tf from
{extra}'''.rstrip() + "\n"


INSTALL = '''# Install rubert_tf unless it is importable already (a checkout with `pip install -e .`, or a second run).
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("rubert_tf") is None:
    if OFFLINE:   # this notebook inside a checkout: install the checkout itself, no download of the package
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "-e", ".."])
    else:         # Colab: from the repository (pulls the pinned TensorFlow 2.21 stack; restart the runtime if asked)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", f"rubert_tf @ git+{REPO}"])
'''

DEVICES = '''import tensorflow as tf

import rubert_tf as rt

GPUS = tf.config.list_physical_devices("GPU")
print("TensorFlow", tf.__version__, "| rubert_tf", rt.__version__, "| GPUs:", [gpu.name for gpu in GPUS] or "none, CPU")
'''

TINY = '''# OFFLINE: a tiny random RuBERT (HF layout: config.json, model.safetensors, vocab.txt) with a WordPiece
# vocabulary learned from the package's sample corpus. It shows the pipeline, not real accuracy.
import keras

from rubert_tf.sample_data import write_sample_corpus


def tiny_checkpoint(directory="tiny-rubert", vocab_size=600, extra_text=""):
    keras.utils.set_random_seed(0)
    files = [write_sample_corpus(os.path.join(directory, "data"))]
    if extra_text:   # more text for the vocabulary (e.g. the target language of a translation)
        files.append(os.path.join(directory, "data", "extra.txt"))
        with open(files[-1], "w", encoding="utf-8") as f:
            f.write(extra_text)
    rt.train_vocab(files, vocab_size=vocab_size, output_path=os.path.join(directory, "vocab.txt"))
    tokenizer = rt.RuBertTokenizer(os.path.join(directory, "vocab.txt"))   # cased, as RuBERT
    config = rt.RuBertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    rt.RuBertForMaskedLM(config).save_pretrained(directory, tokenizer=tokenizer)
    return directory


if OFFLINE:
    MODEL = tiny_checkpoint({tiny_args})
print("model:", MODEL)
'''


def header(name, title, intro):
    url = COLAB.format(name=name)
    return [("md", f"# {title}\n\n{BADGE.format(url=url)}\n\n{intro}")]


def common(model="cointegrated/rubert-tiny2", extra="", tiny_args=""):
    return [("params", parameters(model, extra)), ("code", INSTALL), ("code", DEVICES), ("code", tiny(tiny_args))]


def tiny(args=""):
    return TINY.replace("{tiny_args}", args)


# ---------------------------------------------------------------------------------------------- 01

NB01 = header("01_quickstart.ipynb", "01 · Quickstart: RuBERT in TensorFlow 2 / Keras 3", """\
Load a RuBERT checkpoint, tokenize Russian text inside the TensorFlow graph (the same ids as
HuggingFace), get contextual vectors and sentence embeddings, and save the model back in HF layout.""") + common() + [
    ("md", "## Tokenizer\nIn-graph WordPiece (tensorflow-text): ids, segment ids, padding mask, and character offsets."),
    ("code", '''tokenizer = rt.RuBertTokenizer.from_pretrained(MODEL)
texts = ["Привет, мир!", "Москва — столица России."]
batch = tokenizer(texts, max_length=32, padding="longest", return_offsets=True)
for row, text in enumerate(texts):
    length = int(batch["padding_mask"][row].numpy().sum())
    ids = batch["token_ids"][row].numpy()[:length]
    print(text, "->", [tokenizer.id_to_token(int(i)) for i in ids])
'''),
    ("md", "## Encoder\n`RuBertEncoder` is a functional `keras.Model`: a batch in, `sequence_output` and `pooled_output` out."),
    ("code", '''encoder = rt.RuBertEncoder.from_pretrained(MODEL)
batch.pop("offsets")
outputs = encoder(batch)
print({name: tuple(value.shape) for name, value in outputs.items()})
encoder.summary(line_length=100)
'''),
    ("md", "## Sentence embeddings\nMean pooling over the tokens, L2-normalised (rubert-tiny2 was trained for this)."),
    ("code", '''embedder = rt.RuBertSentenceEncoder.from_pretrained(MODEL)
sentences = ["Кошка спит на диване.", "Кот дремлет на софе.", "Курс рубля вырос."]
print(embedder.similarity(sentences[:1], sentences[1:]).round(3))
'''),
    ("md", "## Save and load\n`save_pretrained` writes HF layout, which `transformers` (PyTorch) also reads."),
    ("code", '''encoder.save_pretrained("saved-encoder", tokenizer=tokenizer)
print(sorted(os.listdir("saved-encoder")))
again = rt.RuBertEncoder.from_pretrained("saved-encoder")
difference = abs(again(batch)["pooled_output"] - outputs["pooled_output"]).numpy().max()
print("max difference after the round trip:", difference)
assert difference < 1e-5
'''),
]

# ---------------------------------------------------------------------------------------------- 02

SENTIMENT_DATA = '''# A small sentiment set written here so the notebook runs anywhere. For real results point TRAIN and
# EVAL at your CSV/TSV/JSONL files (e.g. RuSentNE-2023: text_column="sentence", text_pair_column="entity").
import csv

ROWS = [("Отличный фильм, всем советую!", "positive"), ("Скучно и слишком длинно.", "negative"),
        ("Актёры играют прекрасно.", "positive"), ("Зря потратил вечер.", "negative"),
        ("Музыка просто чудесная.", "positive"), ("Сюжет предсказуемый и вялый.", "negative"),
        ("Смотрел с удовольствием.", "positive"), ("Ужасная игра актёров.", "negative"),
        ("Лучший сериал этого года!", "positive"), ("Еле досидел до конца.", "negative"),
        ("Очень тёплая и добрая история.", "positive"), ("Диалоги натянутые, смотреть невозможно.", "negative")]


def write_csv(path, rows):
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


TRAIN = write_csv("sentiment_train.csv", ROWS[:8] if SMALL else ROWS[:10])
EVAL = write_csv("sentiment_dev.csv", ROWS[8:])
'''

NB02 = header("02_text_classification.ipynb", "02 · Text classification", """\
Fine-tune RuBERT for sentiment with `rubert_tf.finetune` (AdamW with warmup and decay, clipping,
length bucketing, `model.fit`), evaluate, and classify raw text. Multi-label (`multi_label=True`) and
sentence pairs (`text_pair_column`) use the same call.""") + common() + [
    ("code", SENTIMENT_DATA),
    ("md", "## Fine-tune\nThe same as `rubert-tf finetune classification --model MODEL --train ... --eval ... --out ...`."),
    ("code", '''from rubert_tf.finetune import finetune

metrics = finetune("classification", model=MODEL, train=TRAIN, eval=EVAL, out="models/sentiment", overwrite=True,
                   epochs=1 if SMALL else 5, batch_size=4 if SMALL else 16, learning_rate=5e-5, max_length=64,
                   mixed_precision="fp16" if GPUS else None, verbose=0 if SMALL else 1)
print({key: value for key, value in metrics.items() if isinstance(value, (int, float))})
'''),
    ("md", "## Classify raw text\nLabel names travel with the model (`id2label` in its config.json)."),
    ("code", '''classifier = rt.RuBertClassifier.from_pretrained("models/sentiment")
for result in classifier.classify(["Прекрасный фильм!", "Скукота."]):
    print(result["label"], round(result["score"], 3))
'''),
    ("md", "## The same with plain Keras\n`classification_dataset` tokenizes inside `tf.data` and pads every batch to its longest row."),
    ("code", '''from rubert_tf.data.classification import classification_dataset
from rubert_tf.training import create_optimizer

texts, labels = [text for text, _ in ROWS], [int(label == "positive") for _, label in ROWS]
model = rt.RuBertClassifier.from_pretrained(MODEL, labels=["negative", "positive"])
data = classification_dataset(model.tokenizer, texts, labels=labels, batch_size=4, shuffle=True, seed=0)
model.compile(optimizer=create_optimizer(5e-5, total_steps=3), loss=model.default_loss(), jit_compile=False)
model.fit(data.take(3), epochs=1, verbose=0 if SMALL else 1)
print(model.classify("Отличная работа"))
'''),
]

# ---------------------------------------------------------------------------------------------- 03

NER_DATA = '''# CoNLL-style BIO data (one "word TAG" a line, blank line between sentences). For real results use
# factRuEval-2016 or your own files in this format.
SENTENCES = [
    ("Иван Петров живёт в Москве .", "B-PER I-PER O O B-LOC O"),
    ("Волга течёт через Казань .", "B-LOC O O B-LOC O"),
    ("Анна работает в Сбербанке .", "B-PER O O B-ORG O"),
    ("Президент компании Мария Иванова выступила в Новосибирске .", "O O B-PER I-PER O O B-LOC O"),
    ("Поезд из Санкт-Петербурга прибыл в Екатеринбург .", "O O B-LOC O O B-LOC O"),
    ("Газпром открыл офис в Сочи .", "B-ORG O O O B-LOC O"),
]


def write_conll(path, sentences):
    with open(path, "w", encoding="utf-8") as f:
        for words, tags in sentences:
            f.writelines(f"{word} {tag}\\n" for word, tag in zip(words.split(), tags.split()))
            f.write("\\n")
    return path


TRAIN = write_conll("ner_train.bio", SENTENCES[:4])
EVAL = write_conll("ner_dev.bio", SENTENCES[4:])
print(open(TRAIN, encoding="utf-8").read()[:200])
'''

NB03 = header("03_ner.ipynb", "03 · Named-entity recognition", """\
Token classification with BIO tags: words are labelled on their first sub-token (the others are
ignored by the loss), evaluation is entity-level (seqeval-style), and `extract_entities` returns
entities with character offsets in the original string.""") + common() + [
    ("code", NER_DATA),
    ("md", "## Fine-tune\nThe same as `rubert-tf finetune ner --model MODEL --train ner_train.bio --eval ner_dev.bio --out models/ner`."),
    ("code", '''from rubert_tf.finetune import finetune

metrics = finetune("ner", model=MODEL, train=TRAIN, eval=EVAL, out="models/ner", overwrite=True, epochs=1 if SMALL else 10,
                   batch_size=2 if SMALL else 8, learning_rate=5e-5, max_length=64, verbose=0 if SMALL else 1)
print({key: round(value, 3) for key, value in metrics.items() if key in ("precision", "recall", "f1", "word_accuracy")})
'''),
    ("md", "## Entities in raw text"),
    ("code", '''tagger = rt.RuBertTokenClassifier.from_pretrained("models/ner")
print(tagger.labels)
result = tagger.extract_entities("Мария Петрова переехала из Казани в Москву.")
for entity in result["entities"]:
    print(entity)
print(tagger.tag_words([["Анна", "живёт", "в", "Сочи"]]))
'''),
]

# ---------------------------------------------------------------------------------------------- 04

QA_DATA = '''# SQuAD-format data (XQuAD-ru and SberQuAD use it). answer_start is a character offset into the context.
import json

CONTEXT = ("Волга — самая длинная река в Европе. Она берёт начало на Валдайской возвышенности "
           "и впадает в Каспийское море. Длина реки составляет 3530 километров.")
QUESTIONS = [("Какая река самая длинная в Европе?", "Волга"), ("Куда впадает Волга?", "Каспийское море"),
             ("Где берёт начало Волга?", "на Валдайской возвышенности"), ("Какова длина Волги?", "3530 километров")]


def write_squad(path, questions):
    qas = [{"id": str(i), "question": q, "answers": [{"text": a, "answer_start": CONTEXT.index(a)}]}
           for i, (q, a) in enumerate(questions)]
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"version": "1.1", "data": [{"title": "Волга", "paragraphs": [{"context": CONTEXT, "qas": qas}]}]},
                  f, ensure_ascii=False)
    return path


TRAIN = write_squad("qa_train.json", QUESTIONS)
EVAL = write_squad("qa_dev.json", QUESTIONS[:2])
'''

NB04 = header("04_extractive_qa.ipynb", "04 · Extractive question answering", """\
SQuAD-style QA: question and context go in as `[CLS] question [SEP] context [SEP]`; long contexts are cut
into overlapping windows (`stride`), and the answer comes back as the exact substring of the context with
its character offsets. SQuAD v2 (`version_2_with_negative`) may answer "".""") + common() + [
    ("code", QA_DATA),
    ("md", "## Fine-tune\nThe same as `rubert-tf finetune qa --model MODEL --train qa_train.json --eval qa_dev.json --out models/qa`."),
    ("code", '''from rubert_tf.finetune import finetune

metrics = finetune("qa", model=MODEL, train=TRAIN, eval=EVAL, out="models/qa", overwrite=True, epochs=1 if SMALL else 20,
                   batch_size=2 if SMALL else 4, learning_rate=5e-5 if SMALL else 1e-4, max_length=64,
                   options={"stride": 16}, verbose=0 if SMALL else 1)
print({key: round(value, 3) for key, value in metrics.items() if key in ("exact_match", "f1")})
'''),
    ("md", "## Answer questions"),
    ("code", '''qa = rt.RuBertQuestionAnswerer.from_pretrained("models/qa")
for question, _ in QUESTIONS[:2]:
    answer = qa.answer(question, CONTEXT, max_length=64, stride=16)
    print(question, "->", repr(answer["answer"]), (answer["start"], answer["end"]))
'''),
]

# ---------------------------------------------------------------------------------------------- 06

NB06 = header("06_mlm_pretraining.ipynb", "06 · MLM pretraining and domain adaptation", """\
Continue pretraining a RuBERT checkpoint with masked-language modelling on your own domain's text, then
fine-tune from the adapted checkpoint. `prepare_corpus` tokenizes and packs text files into TFRecord shards
once; `pretrain` masks dynamically in the graph (15%, 80/10/10, optionally whole words), trains with
`model.fit` (AdamW, warmup, clipping, optional mixed precision and `tf.distribute`), keeps checkpoints and
backups (an interrupted run resumes at the exact step) and writes HF layout.""") + common() + [
    ("md", "## Corpus\nPlain text files; here the package's sample sentences stand in for your domain's text."),
    ("code", '''from rubert_tf.pretraining import prepare_corpus, pretrain
from rubert_tf.sample_data import write_sample_corpus

corpus = write_sample_corpus("domain_corpus")   # replace by your .txt files (globs and gs:// work)
tokenizer = rt.RuBertTokenizer.from_pretrained(MODEL)
info = prepare_corpus([corpus], "shards", tokenizer, max_length=32 if SMALL else 128, one_document_per_line=True,
                      overwrite=True, progress=False)
print({key: info[key] for key in ("num_documents", "num_sequences", "num_tokens", "shards")})
'''),
    ("md", '## Pretrain\n`model=` continues a checkpoint; `config="cointegrated/rubert-tiny2"` with `vocab=` starts from scratch.'),
    ("code", '''metrics = pretrain(train="shards", eval=None if SMALL else "shards", out="models/domain-mlm", model=MODEL, overwrite=True,
                   steps=4 if SMALL else 200, batch_size=8 if SMALL else 32, checkpoint_every=2 if SMALL else 100,
                   learning_rate=1e-4, whole_word=True, mixed_precision="fp16" if GPUS else None,
                   verbose=0 if SMALL else 1)
print({key: value for key, value in metrics.items() if isinstance(value, (int, float))})
'''),
    ("md", "## Fill in the mask"),
    ("code", '''import numpy as np

mlm = rt.RuBertForMaskedLM.from_pretrained("models/domain-mlm")
tokenizer = rt.RuBertTokenizer.from_pretrained("models/domain-mlm")
batch = tokenizer(["Москва — [MASK] России."], max_length=32, padding="longest")
logits = np.asarray(mlm(batch)["logits"])[0]
position = int(np.argmax(batch["token_ids"].numpy()[0] == tokenizer.token_to_id("[MASK]")))
print([tokenizer.id_to_token(int(i)) for i in logits[position].argsort()[::-1][:5]])
'''),
    ("md", "## Fine-tune from the adapted checkpoint\nAny task model loads it; the MLM head is dropped, a new head starts."),
    ("code", '''classifier = rt.RuBertClassifier.from_pretrained("models/domain-mlm", labels=["negative", "positive"])
print(classifier.classify("Отличный фильм")["probabilities"])
'''),
]

# ---------------------------------------------------------------------------------------------- 07

NB07_DEVICES = '''# The strategy comes first: splitting the CPU into logical devices is only possible before TensorFlow
# initialises them. With GPUs, "mirrored" uses all of them; without, NUM_LOGICAL_CPUS replicas on the CPU.
import tensorflow as tf

import rubert_tf as rt
from rubert_tf.training import create_strategy, global_batch_size

GPUS = tf.config.list_physical_devices("GPU")
strategy = create_strategy("mirrored", num_logical_cpus=None if GPUS else NUM_LOGICAL_CPUS)
print("replicas in sync:", strategy.num_replicas_in_sync, [d.name for d in tf.config.list_logical_devices()])
'''

NB07 = header("07_distributed_training.ipynb", "07 · Multi-GPU and multi-worker training", """\
One `tf.distribute` strategy for every task: `create_strategy("mirrored")` for all GPUs of one machine,
`"multi_worker"` for a cluster described by `TF_CONFIG`, `"tpu"` for TPUs. Models are built and compiled in
`strategy.scope()`; the `tf.data` batches are global batches, split over the replicas, so the same global
batch gives the same update on 1 or N replicas. On a CPU-only machine the CPU is split into two logical
devices, so the mirrored path runs anywhere.""") + [
    ("params", parameters(extra="NUM_LOGICAL_CPUS = 2   # CPU replicas when there is no GPU")),
    ("code", INSTALL), ("code", NB07_DEVICES), ("code", tiny()),
    ("md", "## MirroredStrategy with `model.fit`"),
    ("code", '''from rubert_tf.data.classification import classification_dataset
from rubert_tf.training import create_optimizer, keras_fixes

texts = ["Отличный фильм!", "Скучно.", "Прекрасная игра.", "Зря потратил вечер.", "Чудесно!", "Ужасно."] * 2
labels = [1, 0, 1, 0, 1, 0] * 2
batch_size = global_batch_size(2 if SMALL else 16, strategy)   # per replica -> global
steps = 2 if SMALL else 20
with strategy.scope():
    model = rt.RuBertClassifier.from_pretrained(MODEL, labels=["negative", "positive"])
    model.compile(optimizer=create_optimizer(5e-5, total_steps=steps), loss=model.default_loss(), jit_compile=False)
data = classification_dataset(model.tokenizer, texts, labels=labels, batch_size=batch_size, shuffle=True, seed=0)
# Keras 3 clips each replica's gradients before they are summed; keras_fixes sums first (and restores Keras after).
with keras_fixes.fixes_for(strategy):
    history = model.fit(data.repeat(), steps_per_epoch=steps, epochs=1, verbose=0 if SMALL else 1)
print("global batch", batch_size, "| loss", history.history["loss"])
'''),
    ("md", """\
The runners take the same choice: `finetune(..., strategy="mirrored")`, `pretrain(..., strategy="mirrored")`,
`rubert-tf pretrain --strategy mirrored` (`--num-logical-cpus 2` on a CPU).

## Multi-worker
Every machine runs the same program with its own `TF_CONFIG`; worker 0 is the chief (it writes the model,
the others write their backups under `OUT/workers/`). Keras 3's `fit` fails under
`MultiWorkerMirroredStrategy` with two workers (keras-team/keras#20585); `keras_fixes.fixes_for(strategy)`
switches on rubert_tf's compatibility layer around `fit` (the runners `finetune` / `pretrain` do it for you). On two machines:
```bash
export TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
rubert-tf pretrain --strategy multi_worker --train gs://bucket/shards --model DeepPavlov/rubert-base-cased --out gs://bucket/out --steps 100000
```
Below, the same with two local worker processes on 127.0.0.1 (skipped when SMALL: it starts two more
TensorFlow processes)."""),
    ("code", '''import json
import socket

WORKER = """
import json, os, sys
from rubert_tf.training import create_strategy, create_optimizer, keras_fixes
strategy = create_strategy("multi_worker")   # reads TF_CONFIG
import rubert_tf as rt
from rubert_tf.data.classification import classification_dataset
with strategy.scope():
    model = rt.RuBertClassifier.from_pretrained(sys.argv[1], labels=["negative", "positive"])
    model.compile(optimizer=create_optimizer(5e-5, total_steps=4), loss=model.default_loss(), jit_compile=False)
data = classification_dataset(model.tokenizer, ["Отлично", "Плохо"] * 8, labels=[1, 0] * 8, batch_size=4)
with keras_fixes.fixes_for(strategy):   # keras-team/keras#20585
    history = model.fit(data.repeat(), steps_per_epoch=4, epochs=1, verbose=0)
print(json.dumps({"worker": json.loads(os.environ["TF_CONFIG"])["task"]["index"], "replicas": strategy.num_replicas_in_sync,
                  "loss": history.history["loss"][-1]}))
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
for index in range(2):
    print(f"TF_CONFIG='{json.dumps({'cluster': cluster, 'task': {'type': 'worker', 'index': index}})}' python worker.py {MODEL}")
if not SMALL:
    with open("worker.py", "w", encoding="utf-8") as f:
        f.write(WORKER)
    workers = [subprocess.Popen([sys.executable, "worker.py", MODEL], stdout=subprocess.PIPE, text=True,
                                env=dict(os.environ, CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="2",
                                         TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})))
               for i in range(2)]
    for worker in workers:
        print(worker.communicate(timeout=600)[0].strip().splitlines()[-1])
'''),
    ("md", """\
## Mixed precision and gradient accumulation
`rubert_tf.training.set_mixed_precision("auto")` (before building the model) picks float16 with dynamic loss
scaling on GPUs and bfloat16 on TPUs and CPUs; `enable_gradient_accumulation(optimizer, steps)` makes `steps`
micro-batches one update, on one device or N replicas. `finetune(..., mixed_precision="fp16", grad_accum=4)`
does both."""),
]

# ---------------------------------------------------------------------------------------------- 08

NB08 = header("08_export_and_serving.ipynb", "08 · Export and serving over REST", """\
`rt.export` writes a SavedModel whose signature takes raw text (the tokenizer runs in the graph) and answers
with label names, entities, answer spans or embeddings, in the versioned folder layout TensorFlow Serving
reads. `rubert-tf serve` is a TF Serving-compatible server (same flags, URLs, JSON and error messages; REST
and gRPC) for trying it locally; in production run the real TF Serving image on the same folder.""") + common() + [
    ("md", "## Export\nA classifier here (fine-tune it first, e.g. in notebook 02; its head is random otherwise)."),
    ("code", '''classifier = rt.RuBertClassifier.from_pretrained(MODEL, labels=["negative", "neutral", "positive"])
path = rt.export(classifier, base_path="savedmodels/sentiment", max_length=128)   # the next free version
print(path, sorted(os.listdir(path)))
print(subprocess.run([sys.executable, "-m", "rubert_tf.cli", "saved-model-cli", "show", "--dir", path, "--tag_set",
                      "serve", "--signature_def", "serving_default"], capture_output=True, text=True).stdout)
'''),
    ("md", "## Serve\n`rubert-tf serve` in a subprocess, REST on a free loopback port (TF Serving's default is 8501)."),
    ("code", '''import socket

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    PORT = s.getsockname()[1]
server = subprocess.Popen([sys.executable, "-m", "rubert_tf.cli", "serve", "--port=0", f"--rest_api_port={PORT}",
                           "--model_name=sentiment", f"--model_base_path={os.path.abspath('savedmodels/sentiment')}"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
for line in server.stdout:   # wait for the ready line
    print(line.rstrip())
    if "ready" in line:
        break
assert server.poll() is None, "the server stopped"
'''),
    ("md", "## REST requests\nThe request and answer are TF Serving's: row format `instances`, one object per text."),
    ("code", '''import requests

URL = f"http://127.0.0.1:{PORT}/v1/models/sentiment"
print(requests.get(URL).json())   # version status
answer = requests.post(URL + ":predict", json={"instances": [{"text": "Отличный фильм!"}, {"text": "Скучно."}]})
print(answer.status_code, answer.json())
print(requests.post(URL + ":predict", json={"instances": [1.5]}).json())   # TF Serving's error message
signature = requests.get(URL + "/metadata").json()["metadata"]["signature_def"]["signature_def"]["serving_default"]
print("inputs:", list(signature["inputs"]), "outputs:", list(signature["outputs"]))
'''),
    ("code", '''server.terminate()
server.wait(timeout=30)
'''),
    ("md", """\
## TensorFlow Serving in production
Mount the model's base folder into the official image. Match the image version to the TensorFlow version
that exported the model (2.21 here): the exports use TF 2.21 ops.
```bash
docker run -p 8501:8501 -v "$PWD/savedmodels/sentiment:/models/sentiment" -e MODEL_NAME=sentiment tensorflow/serving:2.21.0
curl -d '{"instances": [{"text": "Отличный фильм!"}]}' localhost:8501/v1/models/sentiment:predict
```
Several models: `rubert_tf.export.write_model_config` writes a `models.config` for `--model_config_file`. New
versions exported into the same base folder are picked up while serving (written atomically)."""),
]

# ---------------------------------------------------------------------------------------------- 05

PAIRS = '''# Parallel data (source, target). DATA (a parameter) reads real pairs instead: two line-aligned files
# ["train.ru", "train.en"], a CSV/TSV/JSONL with "source"/"target" columns, or "tfds:ted_hrlr_translate/ru_to_en".
from rubert_tf.data.seq2seq import read_seq2seq, seq2seq_dataset

if DATA:
    examples = read_seq2seq(DATA)[:MAX_EXAMPLES]
    PAIRS = [(example["source"], example["target"]) for example in examples]
print(len(PAIRS), "pairs, e.g.", PAIRS[0])
'''

NB05_PARAMS = '''DATA = None   # e.g. "tfds:ted_hrlr_translate/ru_to_en" or ["train.ru", "train.en"]
MAX_EXAMPLES = 20_000
PAIRS = [("Привет, мир!", "Hello, world!"), ("Москва — столица России.", "Moscow is the capital of Russia."),
         ("Я люблю читать книги.", "I love reading books."), ("Сегодня хорошая погода.", "The weather is nice today."),
         ("Где находится вокзал?", "Where is the railway station?"), ("Спасибо за помощь.", "Thank you for your help."),
         ("Мы идём в парк.", "We are going to the park."), ("Кошка спит на диване.", "The cat is sleeping on the sofa.")]'''

NB05 = header("05_seq2seq_translation.ipynb", "05 · Seq2seq: Russian → English translation (BERT2BERT)", """\
`RuBertSeq2Seq` warm-starts an encoder-decoder from RuBERT (Rothe et al., 2020: encoder and decoder from the
same checkpoint, new cross-attention, the decoder's output tied to its embeddings; HF `EncoderDecoderModel`
layout). It trains with `model.fit` on the `tf.data` pipeline of `rubert_tf.data.seq2seq` (decoder input
`[CLS] y`, labels `y [SEP]`) and generates with greedy, sampling or beam search inside `tf.while_loop` with a
key/value cache.""") + common(extra=NB05_PARAMS,
                             tiny_args='extra_text="\\n".join(target for _, target in PAIRS) + "\\n"') + [
    ("code", PAIRS),
    ("md", "## Warm start and fine-tune\nInputs: `encoder_token_ids`, `encoder_padding_mask`, `decoder_token_ids`, `decoder_padding_mask`."),
    ("code", '''from rubert_tf.training import create_optimizer

s2s = rt.RuBertSeq2Seq.from_pretrained(MODEL)   # encoder and decoder from the same RuBERT
tokenizer = s2s.tokenizer
sources, targets = [source for source, _ in PAIRS], [target for _, target in PAIRS]
data = seq2seq_dataset(tokenizer, sources, targets, batch_size=4 if SMALL else 32, max_source_length=64,
                       max_target_length=64, shuffle=True, seed=0)
epochs = 1 if SMALL else 30
steps = epochs * -(-len(PAIRS) // (4 if SMALL else 32))
s2s.compile(optimizer=create_optimizer(1e-4 if SMALL else 5e-5, total_steps=steps),
            loss=s2s.default_loss(label_smoothing=0.1), jit_compile=False)
history = s2s.fit(data, epochs=epochs, verbose=0 if SMALL else 2)
print("loss:", [round(value, 3) for value in history.history["loss"]])
'''),
    ("md", "## Generate\nGreedy (`num_beams=1`) or beam search; the tiny offline model outputs noise, a trained one translates."),
    ("code", '''print(s2s.generate(["Привет, мир!", "Спасибо за помощь."], tokenizer=tokenizer, max_length=16, num_beams=2))
'''),
    ("md", "## Save and load\nHF `EncoderDecoderModel` layout, which transformers' `EncoderDecoderModel.from_pretrained` reads too."),
    ("code", '''s2s.save_pretrained("models/ru-en")
again = rt.RuBertSeq2Seq.from_pretrained("models/ru-en")
print(sorted(os.listdir("models/ru-en")))
print(again.generate("Привет, мир!", max_length=16))
'''),
]

NOTEBOOKS_SPEC = {
    "05_seq2seq_translation.ipynb": NB05,
    "01_quickstart.ipynb": NB01,
    "02_text_classification.ipynb": NB02,
    "03_ner.ipynb": NB03,
    "04_extractive_qa.ipynb": NB04,
    "06_mlm_pretraining.ipynb": NB06,
    "07_distributed_training.ipynb": NB07,
    "08_export_and_serving.ipynb": NB08,
}


def build(cells):
    notebook = nbformat.v4.new_notebook()
    notebook.metadata = {"accelerator": "GPU", "colab": {"provenance": []},
                         "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                         "language_info": {"name": "python"}}
    for index, (kind, source) in enumerate(cells):
        source = source.rstrip("\n")
        if kind == "md":
            cell = nbformat.v4.new_markdown_cell(source)
        else:
            cell = nbformat.v4.new_code_cell(source)
            if kind == "params":
                cell.metadata["tags"] = ["parameters"]
        cell["id"] = f"cell-{index:02d}"   # stable ids: regenerating gives the same file
        notebook.cells.append(cell)
    nbformat.validate(notebook)
    return nbformat.writes(notebook) + "\n"


def all_notebooks():
    return {name: build(cells) for name, cells in sorted(NOTEBOOKS_SPEC.items())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if notebooks/ is not what this script writes")
    args = parser.parse_args(argv)
    stale = []
    for name, text in all_notebooks().items():
        path = os.path.join(NOTEBOOKS, name)
        current = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if current != text:
            stale.append(name)
            if not args.check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
    if args.check and stale:
        print("out of date (run tools/make_notebooks.py):", ", ".join(stale))
        return 1
    print(("checked " if args.check else "wrote ") + str(len(all_notebooks())) + " notebooks" +
          (f", changed: {', '.join(stale)}" if stale and not args.check else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
