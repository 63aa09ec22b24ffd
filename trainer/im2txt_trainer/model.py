"""Show and Tell (reference show_and_tell_model.py) on TF2 variables with the reference names."""

from __future__ import annotations

import keras
import tensorflow as tf

from .config import ModelConfig, TrainingConfig
from .inception import InceptionV3Base

LSTM_KERNEL = "lstm/basic_lstm_cell/kernel"
LSTM_BIAS = "lstm/basic_lstm_cell/bias"
# Older reference releases (TF <= 1.0 contrib.rnn) stored the same tensors under these names.
LEGACY_NAMES = {LSTM_KERNEL: "lstm/BasicLSTMCell/Linear/Matrix", LSTM_BIAS: "lstm/BasicLSTMCell/Linear/Bias"}
FORGET_BIAS = 1.0


class ShowAndTell(tf.Module):
    def __init__(self, cfg: ModelConfig, train_cfg: TrainingConfig | None = None, seed: int | None = None,
                 encoder_dtype: object | None = None) -> None:
        super().__init__(name="show_and_tell")
        self.cfg, self.train_cfg = cfg, train_cfg or TrainingConfig()
        if seed is not None:
            keras.utils.set_random_seed(seed)
        self.encoder = InceptionV3Base(cfg.image_height, cfg.image_width, self.train_cfg.batch_norm_decay,
                                       self.train_cfg.batch_norm_epsilon, dtype=encoder_dtype)
        s = cfg.initializer_scale
        init = tf.random_uniform_initializer(-s, s)
        e, u, v = cfg.embedding_size, cfg.num_lstm_units, cfg.vocab_size
        feat = int(self.encoder.model.output_shape[-1])
        self.image_embedding = tf.Variable(init([feat, e]), name="image_embedding/weights")
        self.seq_embedding = tf.Variable(init([v, e]), name="seq_embedding/map")
        self.lstm_kernel = tf.Variable(init([e + u, 4 * u]), name="lstm/basic_lstm_cell/kernel")
        # BasicLSTMCell's bias starts at zero (the initializer scope only reaches the kernel).
        self.lstm_bias = tf.Variable(tf.zeros([4 * u]), name="lstm/basic_lstm_cell/bias")
        self.logits_weights = tf.Variable(init([u, v]), name="logits/weights")
        self.logits_biases = tf.Variable(tf.zeros([v]), name="logits/biases")
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")

    # -- variables -------------------------------------------------------------------------------------------
    def named_variables(self) -> dict[str, tf.Variable]:
        """Reference checkpoint name -> variable (376 Inception + 7 Show and Tell + global_step)."""
        out = dict(self.encoder.variables())
        out.update({
            "image_embedding/weights": self.image_embedding,
            "seq_embedding/map": self.seq_embedding,
            LSTM_KERNEL: self.lstm_kernel,
            LSTM_BIAS: self.lstm_bias,
            "logits/weights": self.logits_weights,
            "logits/biases": self.logits_biases,
            "global_step": self.global_step,
        })
        return out

    def caption_variables(self) -> list[tf.Variable]:
        return [self.image_embedding, self.seq_embedding, self.lstm_kernel, self.lstm_bias,
                self.logits_weights, self.logits_biases]

    def trainable(self, train_inception: bool) -> list[tf.Variable]:
        extra = self.encoder.trainable_variables() if train_inception else []
        return self.caption_variables() + extra

    # -- the network -----------------------------------------------------------------------------------------
    def image_features(self, images: tf.Tensor, training: bool, train_inception: bool) -> tf.Tensor:
        """InceptionV3 -> average pool over the whole map (8x8 at 299) -> [B, 2048]."""
        inception_training = training and train_inception
        net = self.encoder(images, training=inception_training)
        net = tf.reduce_mean(tf.cast(net, tf.float32), axis=[1, 2])
        if inception_training and self.cfg.inception_dropout_keep_prob < 1.0:
            net = tf.nn.dropout(net, rate=1.0 - self.cfg.inception_dropout_keep_prob)
        return net

    def embed_image(self, features: tf.Tensor) -> tf.Tensor:
        return tf.matmul(features, self.image_embedding)

    def lstm_cell(self, x: tf.Tensor, c: tf.Tensor, h: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """BasicLSTMCell: [x, h] @ kernel + bias -> i, j, f, o; forget bias +1 at run time."""
        gates = tf.matmul(tf.concat([x, h], axis=1), self.lstm_kernel) + self.lstm_bias
        i, j, f, o = tf.split(gates, 4, axis=1)
        c = c * tf.sigmoid(f + FORGET_BIAS) + tf.sigmoid(i) * tf.tanh(j)
        return c, tf.tanh(c) * tf.sigmoid(o)

    def _dropout(self, x: tf.Tensor, training: bool) -> tf.Tensor:
        keep = self.cfg.lstm_dropout_keep_prob
        return tf.nn.dropout(x, rate=1.0 - keep) if training and keep < 1.0 else x

    def initial_state(self, image_embeddings: tf.Tensor, training: bool) -> tuple[tf.Tensor, tf.Tensor]:
        """Feed the image embedding first; its output is discarded, its state kept."""
        zeros = tf.zeros([tf.shape(image_embeddings)[0], self.cfg.num_lstm_units])
        return self.lstm_cell(self._dropout(image_embeddings, training), zeros, zeros)

    def logits(self, image_embeddings: tf.Tensor, input_seqs: tf.Tensor, training: bool) -> tf.Tensor:
        """[B, T] word ids -> [B, T, V] logits."""
        c, h = self.initial_state(image_embeddings, training)
        x = self._dropout(tf.nn.embedding_lookup(self.seq_embedding, input_seqs), training)
        e = self.cfg.embedding_size
        # The input half of the kernel for every step at once; only h @ W_h stays in the loop.
        xw = tf.einsum("bte,eg->btg", x, self.lstm_kernel[:e]) + self.lstm_bias
        w_h = self.lstm_kernel[e:]
        steps = tf.shape(input_seqs)[1]
        outputs = tf.TensorArray(tf.float32, size=steps)
        xw_t = tf.transpose(xw, [1, 0, 2])
        for t in tf.range(steps):
            i, j, f, o = tf.split(xw_t[t] + tf.matmul(h, w_h), 4, axis=1)
            c = c * tf.sigmoid(f + FORGET_BIAS) + tf.sigmoid(i) * tf.tanh(j)
            h = tf.tanh(c) * tf.sigmoid(o)
            outputs = outputs.write(t, h)
        out = tf.transpose(outputs.stack(), [1, 0, 2])
        out = self._dropout(out, training)
        return tf.einsum("btu,uv->btv", out, self.logits_weights) + self.logits_biases

    def batch_loss(self, logits: tf.Tensor, target_seqs: tf.Tensor, mask: tf.Tensor,
                   total_weight: tf.Tensor | None = None) -> tf.Tensor:
        """sum(xent * mask) / sum(mask); a replica passes the global batch's sum(mask) as `total_weight`."""
        xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target_seqs, logits=logits)
        mask = tf.cast(mask, tf.float32)
        return tf.reduce_sum(xent * mask) / (tf.reduce_sum(mask) if total_weight is None else total_weight)

    def regularization_loss(self) -> tf.Tensor:
        """slim l2_regularizer(4e-5) on the Inception conv weights (only while they train)."""
        l2 = tf.add_n([tf.cast(tf.nn.l2_loss(w), tf.float32) for w in self.encoder.conv_kernels()])
        return self.train_cfg.weight_decay * l2

    # -- inference -------------------------------------------------------------------------------------------
    def inference_initial_state(self, images: tf.Tensor) -> tf.Tensor:
        """images -> concatenated LSTM state [B, 2U] (c then h) after feeding the image."""
        emb = self.embed_image(self.image_features(images, training=False, train_inception=False))
        c, h = self.initial_state(emb, training=False)
        return tf.concat([c, h], axis=1)

    def inference_step(self, input_feed: tf.Tensor, state: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """word ids [N], state [N, 2U] -> softmax [N, V], new state [N, 2U]."""
        c, h = tf.split(state, 2, axis=1)
        x = tf.nn.embedding_lookup(self.seq_embedding, input_feed)
        c, h = self.lstm_cell(x, c, h)
        probs = tf.nn.softmax(tf.matmul(h, self.logits_weights) + self.logits_biases)
        return probs, tf.concat([c, h], axis=1)
