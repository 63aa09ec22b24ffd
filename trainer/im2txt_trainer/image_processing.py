"""Image preprocessing as the reference (ops/image_processing.py), in TF2 ops."""

from __future__ import annotations

import tensorflow as tf


def distort_image(image: tf.Tensor, ordering: tf.Tensor) -> tf.Tensor:
    """Random flip, then colour distortion in one of the reference's two orders (it alternated by thread id)."""
    image = tf.image.random_flip_left_right(image)

    def order0() -> tf.Tensor:
        x = tf.image.random_brightness(image, max_delta=32.0 / 255.0)
        x = tf.image.random_saturation(x, lower=0.5, upper=1.5)
        x = tf.image.random_hue(x, max_delta=0.032)
        return tf.image.random_contrast(x, lower=0.5, upper=1.5)

    def order1() -> tf.Tensor:
        x = tf.image.random_brightness(image, max_delta=32.0 / 255.0)
        x = tf.image.random_contrast(x, lower=0.5, upper=1.5)
        x = tf.image.random_saturation(x, lower=0.5, upper=1.5)
        return tf.image.random_hue(x, max_delta=0.032)

    image = tf.cond(tf.equal(ordering % 2, 0), order0, order1)
    return tf.clip_by_value(image, 0.0, 1.0)


def process_image(encoded: tf.Tensor, is_training: bool, height: int = 299, width: int = 299,
                  resize_height: int = 346, resize_width: int = 346,
                  ordering: tf.Tensor | int = 0) -> tf.Tensor:
    """JPEG bytes -> float image in [-1, 1] of shape [height, width, 3]."""
    image = tf.io.decode_jpeg(encoded, channels=3)
    image = tf.image.convert_image_dtype(image, dtype=tf.float32)
    # TF1 resize_images semantics: bilinear, align_corners=False, no half-pixel centres.
    image = tf.raw_ops.ResizeBilinear(images=image[tf.newaxis], size=[resize_height, resize_width],
                                      align_corners=False, half_pixel_centers=False)[0]
    if is_training:
        image = tf.image.random_crop(image, [height, width, 3])
        image = distort_image(image, tf.convert_to_tensor(ordering, tf.int64))
    else:
        image = tf.image.resize_with_crop_or_pad(image, height, width)
    image.set_shape([height, width, 3])
    return (image - 0.5) * 2.0
