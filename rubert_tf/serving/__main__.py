"""`python -m rubert_tf.serving --model_name=NAME --model_base_path=DIR` (see rubert_tf/serving/server.py)."""

import sys

from rubert_tf.serving.server import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m rubert_tf.serving"))
