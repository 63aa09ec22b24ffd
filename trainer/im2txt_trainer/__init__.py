"""im2txt ("Show and Tell") on TensorFlow 2: the reference port the trainer image runs (docs/trainer.md)."""
