"""Generation speed of RuBertSeq2Seq: tokens/s with and without the key/value cache, greedy and beam 4.

    python benchmarks/seq2seq_generation.py                       # bert2bert, rubert-tiny2-like width
    python benchmarks/seq2seq_generation.py --batch 8 --max_length 64 --layers 3 --hidden 312 --xla

Not a test. A random-weight bert2bert (vocab 30000, `--layers` encoder and decoder layers); eos is
banned until max_length (min_length = max_length), so every mode generates exactly
batch x (max_length - 1) tokens and the numbers compare like for like. Beam search's tokens/s counts
the returned tokens (one hypothesis per input), not the num_beams x more it scores. Each mode runs once
to trace (not timed), then `--repeats` timed runs; the best is reported. The machine's other load
shows up in the numbers: compare modes with each other.
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def build_model(args):
    import keras

    from rubert_tf.config import RuBertConfig
    from rubert_tf.models.seq2seq import RuBertSeq2Seq
    from rubert_tf.models.seq2seq_config import Seq2SeqConfig

    keras.utils.set_random_seed(0)
    half = RuBertConfig(vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                        num_attention_heads=args.heads, intermediate_size=2 * args.hidden,
                        max_position_embeddings=max(512, args.max_length))
    config = Seq2SeqConfig(encoder=half, decoder=half, decoder_start_token_id=2, eos_token_id=3, pad_token_id=0)
    return RuBertSeq2Seq(config)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--source_length", type=int, default=32)
    parser.add_argument("--max_length", type=int, default=64, help="decoder tokens incl. the start token")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=312)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=30000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--xla", action="store_true", help="also time jit_compile=True (cache on only)")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    model = build_model(args)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, args.vocab, (args.batch, args.source_length)).astype(np.int32)
    mask = np.ones_like(ids)
    generated = args.batch * (args.max_length - 1)
    print(f"bert2bert: {args.layers}+{args.layers} layers, hidden {args.hidden}, vocab {args.vocab}; batch {args.batch}, "
          f"source {args.source_length} tokens, {args.max_length - 1} new tokens per input; "
          f"TF {tf.__version__}, {os.cpu_count()} CPUs")
    modes = [(name, beams, cache, False) for name, beams in (("greedy", 1), ("beam 4", 4)) for cache in (True, False)]
    if args.xla:
        modes += [("greedy", 1, True, True), ("beam 4", 4, True, True)]
    print(f"{'search':8} {'cache':6} {'xla':4} {'trace s':>8} {'run s':>8} {'tokens/s':>9}")
    results = {}
    for name, beams, cache, xla in modes:
        kwargs = dict(max_length=args.max_length, min_length=args.max_length, num_beams=beams, use_cache=cache,
                      jit_compile=xla)
        start = time.perf_counter()
        first = model.generate_ids(ids, mask, **kwargs)
        trace = time.perf_counter() - start
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = model.generate_ids(ids, mask, **kwargs)
            best = min(best, time.perf_counter() - start)
        assert out == first and all(len(row) == args.max_length for row in out)
        results[(name, cache, xla)] = out
        print(f"{name:8} {'on' if cache else 'off':6} {'on' if xla else 'off':4} {trace:8.2f} {best:8.3f} "
              f"{generated / best:9.1f}")
    for name in ("greedy", "beam 4"):
        same = results[(name, True, False)] == results[(name, False, False)]
        print(f"{name}: cache on and off give {'identical' if same else 'DIFFERENT'} tokens")
        if args.xla:
            same = results[(name, True, True)] == results[(name, True, False)]
            print(f"{name}: XLA and graph mode give {'identical' if same else 'DIFFERENT'} tokens")


if __name__ == "__main__":
    main()
