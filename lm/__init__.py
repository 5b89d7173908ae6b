"""lm: train and study Transformer language models with JAX, Flax NNX, Optax and Orbax."""
