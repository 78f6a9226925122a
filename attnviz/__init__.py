"""attnviz: see, score and explain the attention of TensorFlow/Keras sequence models."""

__version__ = "0.1.0"
