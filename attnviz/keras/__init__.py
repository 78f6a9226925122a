"""Everything that imports Keras or TensorFlow: capture, built-in models, training, the recorder,
model loading, attribution, interventions and explain's measurements.

    from attnviz.keras import AttentionRecorder

The recorder is loaded on first use, so importing one module of this package does not import
the others.
"""

__all__ = ["AttentionRecorder"]


def __getattr__(name: str):
    if name == "AttentionRecorder":
        from attnviz.keras.recorder import AttentionRecorder

        return AttentionRecorder
    raise AttributeError(f"module 'attnviz.keras' has no attribute {name!r}")
