"""Checkpoint I/O: HF safetensors / pytorch_model.bin and TF1 checkpoints in, the HF layout out.

    from rubert_tf.checkpoints import load_model, save_hf_checkpoint
    encoder = load_model(RuBertEncoder, "path/to/rubert")   # what RuBertEncoder.from_pretrained does
"""

from rubert_tf.checkpoints.hf import CheckpointError, read_hf_weights, save_hf_checkpoint
from rubert_tf.checkpoints.loading import load_model, load_weights, read_weights
from rubert_tf.checkpoints.tf1 import read_tf1_weights

__all__ = ["CheckpointError", "load_model", "load_weights", "read_hf_weights", "read_tf1_weights",
           "read_weights", "save_hf_checkpoint"]
