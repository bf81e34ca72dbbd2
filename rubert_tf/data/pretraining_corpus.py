"""prepare_corpus: UTF-8 text files -> tokenized, packed TFRecord shards for MLM pretraining.

    stats = prepare_corpus(["corpus/*.txt"], "shards/", tokenizer, max_length=128)

Streams: files are read in 1 MiB blocks (any tf.io.gfile path: local, gs://, ...), lines are tokenized
in batches by the in-graph tokenizer inside a parallel tf.data map, and packed sequences are written as
they fill; memory use does not grow with the corpus. Documents are blank-line-separated blocks of lines
(default) or single lines (`one_document_per_line`).

Packing (the record format, and its reader, are in rubert_tf/data/pretraining.py):
- "documents" (default, RoBERTa's FULL-SENTENCES): [CLS] doc1 [SEP] doc2 [SEP] ... [SEP], filled to
  `max_length` (max_length - 1 when a document ends one token short: no "[SEP] [SEP]"), a long document
  continuing in the next record; every token of the corpus is used.
- "segment_pairs" (for sentence-order prediction): each record holds [CLS] A [SEP] B [SEP] with A and
  B consecutive spans of one document, split at a sentence end or line end near a random point
  (else at a word start). Records of short documents are shorter (padding at training time).

A line that is not valid UTF-8 is skipped and reported with its file and byte offset (the byte
that fails); the rest of the file is processed. Output: shard-00000.tfrecord, ... (at most
`sequences_per_shard` records each), vocab.txt and corpus.json (settings, counts, shard list,
encoding errors), written last so a directory with corpus.json is complete.
"""

import hashlib
import json
import logging
import os

import numpy as np
import tensorflow as tf

from rubert_tf.data.pretraining import CORPUS_INFO, RECORD_FORMAT, serialize_record

logger = logging.getLogger(__name__)

PACKING_MODES = ("documents", "segment_pairs")
SENTENCE_ENDS = (".", "!", "?", "…")  # a split right after one of these starts a new sentence (mostly)
READ_BLOCK = 1 << 20
MAX_REPORTED_ERRORS = 1000


def _join(directory, name):
    return directory.rstrip("/") + "/" + name if "://" in directory else os.path.join(directory, name)


def expand_inputs(patterns):
    """Sorted files of globs / paths / directories (any tf.io.gfile URL); an unmatched pattern is an error."""
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    files = []
    for pattern in patterns:
        pattern = os.fspath(pattern)
        if tf.io.gfile.isdir(pattern):
            matched = [p for p in tf.io.gfile.glob(_join(pattern, "*")) if not tf.io.gfile.isdir(p)]
        else:
            matched = tf.io.gfile.glob(pattern)
        if not matched:
            raise FileNotFoundError(f"no input file matches {pattern!r}")
        files.extend(sorted(matched))
    return list(dict.fromkeys(files))


class _Reader:
    """Lines of the input files as (document number, line bytes), with encoding errors recorded."""

    def __init__(self, files, one_document_per_line):
        self.files = files
        self.one_document_per_line = one_document_per_line
        self.bytes_read = 0
        self.errors = []
        self.num_errors = 0
        self.num_documents = 0
        self.num_lines = 0

    def _lines(self, path):
        """(byte offset, line without its line break) of one file, read in blocks."""
        offset, carry = 0, b""
        with tf.io.gfile.GFile(path, "rb") as f:
            while True:
                block = f.read(READ_BLOCK)
                self.bytes_read += len(block)
                if not block:
                    break
                data = carry + block
                start = 0
                while True:
                    end = data.find(b"\n", start)
                    if end < 0:
                        break
                    yield offset + start, data[start:end].rstrip(b"\r")
                    start = end + 1
                offset += start
                carry = data[start:]
        if carry:
            yield offset, carry.rstrip(b"\r")

    def __iter__(self):
        document = -1
        for path in self.files:
            in_document = False
            for number, (offset, line) in enumerate(self._lines(path), start=1):
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as error:
                    self._report(path, offset + error.start, number, error)
                    continue
                if not text.strip():
                    in_document = False
                    continue
                if self.one_document_per_line or not in_document:
                    document += 1
                    self.num_documents += 1
                    in_document = True
                self.num_lines += 1
                yield document, line

    def _report(self, path, offset, line_number, error):
        self.num_errors += 1
        bad = error.object[error.start:error.end].hex(" ")
        message = (f"{path}: invalid UTF-8 at byte offset {offset} (line {line_number}, bytes {bad}: "
                   f"{error.reason}); line skipped")
        if self.num_errors <= MAX_REPORTED_ERRORS:
            self.errors.append({"file": path, "byte_offset": offset, "line": line_number, "message": message})
        logger.info("%s", message)


class _ShardWriter:
    def __init__(self, out_dir, sequences_per_shard):
        self.out_dir = out_dir
        self.sequences_per_shard = sequences_per_shard
        self.shards = []
        self.num_sequences = 0
        self.num_tokens = 0
        self._writer = None
        self._in_shard = 0

    def write(self, token_ids, segment_ids):
        if self._writer is None or self._in_shard >= self.sequences_per_shard:
            self.close()
            name = f"shard-{len(self.shards):05d}.tfrecord"
            self.shards.append(name)
            self._writer = tf.io.TFRecordWriter(_join(self.out_dir, name))
            self._in_shard = 0
        self._writer.write(serialize_record(token_ids, segment_ids))
        self._in_shard += 1
        self.num_sequences += 1
        self.num_tokens += len(token_ids)

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _DocumentPacker:
    """[CLS] doc [SEP] doc [SEP] ... [SEP] across documents, each record filled to max_length."""

    def __init__(self, writer, max_length, cls_id, sep_id):
        self.writer, self.cls_id, self.sep_id = writer, cls_id, sep_id
        self.budget = max_length - 2  # room between the leading [CLS] and the final [SEP]
        self.buffer = []

    def start_document(self):
        if self.buffer:
            if len(self.buffer) + 1 >= self.budget:
                self.flush()  # the record's final [SEP] separates the documents
            else:
                self.buffer.append(self.sep_id)

    def add(self, ids, boundary=True):
        while ids:
            room = self.budget - len(self.buffer)
            self.buffer.extend(ids[:room])
            ids = ids[room:]
            if len(self.buffer) == self.budget:
                self.flush()

    def end_document(self):
        pass

    def flush(self):
        if self.buffer:
            sequence = [self.cls_id] + self.buffer + [self.sep_id]
            self.writer.write(sequence, [0] * len(sequence))
            self.buffer = []


class _SegmentPairPacker:
    """[CLS] A [SEP] B [SEP] from one document at a time; A and B split near a random point."""

    def __init__(self, writer, max_length, cls_id, sep_id, sentence_end_ids, is_continuation, seed):
        self.writer, self.cls_id, self.sep_id = writer, cls_id, sep_id
        self.budget = max_length - 3
        self.sentence_end_ids = sentence_end_ids
        self.is_continuation = is_continuation
        self.rng = np.random.default_rng(seed)
        self.buffer = []
        self.boundaries = set()  # good split points: buffer index where a new line/sentence starts

    def start_document(self):
        self.end_document()

    def add(self, ids, boundary=True):
        if self.buffer and boundary:
            self.boundaries.add(len(self.buffer))
        for token in ids:
            self.buffer.append(token)
            if len(self.buffer) == self.budget:
                self.flush()
            elif token in self.sentence_end_ids:
                self.boundaries.add(len(self.buffer))

    def end_document(self):
        self.flush()

    def flush(self):
        tokens = self.buffer
        if not tokens:
            return
        split = len(tokens)
        if len(tokens) >= 2:
            target = int(self.rng.integers(1, len(tokens)))
            candidates = [b for b in self.boundaries if 0 < b < len(tokens)]
            if not candidates:
                candidates = [i for i in range(1, len(tokens)) if not self.is_continuation[tokens[i]]]
            split = min(candidates, key=lambda b: (abs(b - target), b)) if candidates else target
        first, second = tokens[:split], tokens[split:]
        sequence = [self.cls_id] + first + [self.sep_id]
        segments = [0] * len(sequence)
        if second:
            sequence += second + [self.sep_id]
            segments += [1] * (len(second) + 1)
        self.writer.write(sequence, segments)
        self.buffer = []
        self.boundaries = set()


def vocab_sha1(tokens):
    return hashlib.sha1("\n".join(tokens).encode("utf-8")).hexdigest()


def prepare_corpus(inputs, out_dir, tokenizer, max_length=128, one_document_per_line=False, packing="documents",
                   sequences_per_shard=50_000, lines_per_batch=2048, seed=0, overwrite=False, progress=True):
    """Tokenize and pack text files into TFRecord shards (see the module docstring).

    Args:
      inputs: file paths, directories or globs (any tf.io.gfile URL).
      out_dir: output directory (created; any tf.io.gfile URL).
      tokenizer: a RuBertTokenizer, or a directory with vocab.txt / a vocab.txt path.
      max_length: length of the packed sequences, special tokens included.
      packing: "documents" or "segment_pairs".
      overwrite: replace an existing prepared corpus in `out_dir` (else that is an error).

    Returns:
      the corpus.json dict: counts, shard names, encoding errors (file, byte_offset, line, message).
    """
    from tqdm import tqdm

    from rubert_tf.tokenizer import RuBertTokenizer

    if packing not in PACKING_MODES:
        raise ValueError(f"packing must be one of {PACKING_MODES}, got {packing!r}")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 8:
        raise ValueError(f"max_length must be an int >= 8, got {max_length!r}")
    if sequences_per_shard < 1:
        raise ValueError(f"sequences_per_shard must be positive, got {sequences_per_shard}")
    if not isinstance(tokenizer, RuBertTokenizer):
        path = os.fspath(tokenizer)
        tokenizer = RuBertTokenizer.from_pretrained(path) if os.path.isdir(path) else RuBertTokenizer(path)
    files = expand_inputs(inputs)
    out_dir = os.fspath(out_dir)
    tf.io.gfile.makedirs(out_dir)
    old = [p for p in tf.io.gfile.glob(_join(out_dir, "shard-*.tfrecord"))]
    if tf.io.gfile.exists(_join(out_dir, CORPUS_INFO)) or old:
        if not overwrite:
            raise FileExistsError(f"{out_dir} already holds a prepared corpus; pass overwrite=True (--overwrite)")
        for path in old + [_join(out_dir, CORPUS_INFO)]:
            if tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)

    vocabulary = tokenizer.vocabulary
    reader = _Reader(files, one_document_per_line)
    writer = _ShardWriter(out_dir, sequences_per_shard)
    if packing == "documents":
        packer = _DocumentPacker(writer, max_length, tokenizer.cls_id, tokenizer.sep_id)
    else:
        ids = {t: i for i, t in enumerate(vocabulary)}
        ends = {ids[t] for t in SENTENCE_ENDS if t in ids}
        continuation = np.array([t.startswith("##") for t in vocabulary])
        packer = _SegmentPairPacker(writer, max_length, tokenizer.cls_id, tokenizer.sep_id, ends, continuation, seed)

    def chunks():
        documents, texts = [], []
        for document, line in reader:
            documents.append(document)
            texts.append(line)
            if len(texts) == lines_per_batch:
                yield np.array(documents, dtype=np.int64), np.array(texts, dtype=object)
                documents, texts = [], []
        if texts:
            yield np.array(documents, dtype=np.int64), np.array(texts, dtype=object)

    lines = tf.data.Dataset.from_generator(
        chunks, output_signature=(tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.string)))
    # Tokenization runs in tf.data's thread pool, several batches at once, output order kept.
    batches = lines.map(lambda documents, texts: (documents, tokenizer.tokenize(texts)),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(4)

    total_bytes = sum(tf.io.gfile.stat(path).length for path in files)
    bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc="prepare-corpus", disable=not progress)
    current = None
    try:
        for documents, pieces in batches:
            documents = documents.numpy()
            flat = pieces.flat_values.numpy().tolist()
            splits = pieces.row_splits.numpy().tolist()
            for row, document in enumerate(documents):
                if document != current:
                    if current is not None:
                        packer.end_document()
                    packer.start_document()
                    current = document
                packer.add(flat[splits[row]:splits[row + 1]])
            bar.update(reader.bytes_read - bar.n)
            bar.set_postfix(sequences=writer.num_sequences, errors=reader.num_errors, refresh=False)
        packer.end_document()
        packer.flush()
    finally:
        writer.close()
        bar.update(reader.bytes_read - bar.n)
        bar.close()

    with tf.io.gfile.GFile(_join(out_dir, "vocab.txt"), "w") as f:
        f.write("".join(t + "\n" for t in vocabulary))
    info = {
        "format": RECORD_FORMAT,
        "max_length": max_length,
        "packing": packing,
        "one_document_per_line": bool(one_document_per_line),
        "vocab_size": len(vocabulary),
        "vocab_sha1": vocab_sha1(vocabulary),
        "lowercase": tokenizer.lowercase,
        "strip_accents": tokenizer.strip_accents,
        "inputs": files,
        "num_documents": reader.num_documents,
        "num_lines": reader.num_lines,
        "num_sequences": writer.num_sequences,
        "num_tokens": writer.num_tokens,
        "num_encoding_errors": reader.num_errors,
        "encoding_errors": reader.errors,
        "shards": writer.shards,
    }
    with tf.io.gfile.GFile(_join(out_dir, CORPUS_INFO), "w") as f:
        f.write(json.dumps(info, ensure_ascii=False, indent=2) + "\n")
    if reader.num_errors:
        logger.warning("%d line(s) with invalid UTF-8 skipped, the first: %s (the first %d are listed in %s)",
                       reader.num_errors, reader.errors[0]["message"], MAX_REPORTED_ERRORS,
                       _join(out_dir, CORPUS_INFO))
    return info
