"""Model and training configuration with the reference im2txt values (configuration.py)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 12000
    image_height: int = 299
    image_width: int = 299
    # The reference resizes to 346x346 before cropping 299x299; smaller test images keep that ratio.
    resize_height: int = 346
    resize_width: int = 346
    initializer_scale: float = 0.08
    embedding_size: int = 512
    num_lstm_units: int = 512
    lstm_dropout_keep_prob: float = 0.7
    inception_dropout_keep_prob: float = 0.8
    batch_size: int = 32
    values_per_input_shard: int = 2300
    input_queue_capacity_factor: int = 2
    start_word: str = "<S>"
    end_word: str = "</S>"

    @classmethod
    def for_image_size(cls, image_size: int, **overrides: object) -> ModelConfig:
        """Square images of `image_size`, resized first by the reference ratio 346/299."""
        resize = round(image_size * 346 / 299)
        return cls(image_height=image_size, image_width=image_size, resize_height=resize,
                   resize_width=resize, **overrides)  # type: ignore[arg-type]

    @property
    def shuffle_buffer(self) -> int:
        return self.values_per_input_shard * self.input_queue_capacity_factor


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    num_examples_per_epoch: int = 586363
    optimizer: str = "SGD"
    initial_learning_rate: float = 2.0
    learning_rate_decay_factor: float = 0.5
    num_epochs_per_decay: float = 8.0
    train_inception_learning_rate: float = 0.0005
    clip_gradients: float = 5.0
    max_checkpoints_to_keep: int = 5
    weight_decay: float = 0.00004  # Inception L2 (slim: weight * sum(w**2) / 2), stage 2 only
    batch_norm_decay: float = 0.9997
    batch_norm_epsilon: float = 0.001

