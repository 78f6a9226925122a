import pytest

from attnviz.analysis.tasks import checked
from attnviz.errors import AttnvizError
from attnviz.store.config import TrainConfig


def test_defaults_reproduce_the_founding_case():
    config = TrainConfig().validate()
    assert (config.task, config.encoder, config.attention) == (
        "add-before-delimiter", "lstm", "luong")
    assert (config.seq_len, config.units, config.samples, config.val_samples) == (
        20, 100, 20_000, 4_000)
    assert (config.batch_size, config.seed, config.probe_size, config.dropout) == (64, 7, 10, 0.2)


def test_round_trips_through_json_dict():
    config = TrainConfig(encoder="gru", epochs=3, learning_rate=0.01)
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("changes, message", [
    ({"task": "nope"}, "unknown task"),
    ({"encoder": "cnn"}, "unknown --encoder"),
    ({"attention": "dot"}, "unknown --attention"),
    ({"seq_len": 2}, "--seq-len 2 is too short"),
    ({"epochs": 0}, "--epochs must be at least 1"),
    ({"samples": 10, "batch_size": 64}, "fewer than --batch-size"),
    ({"dropout": 1.0}, "--dropout"),
    ({"learning_rate": 0.0}, "--learning-rate"),
    ({"record_heads": "some"}, "--record-heads"),
    ({"strategy": "tpu"}, "--strategy"),
    ({"strategy": "multi-worker"}, "fails inside Keras 3.15's fit"),
])
def test_bad_values_name_the_flag(changes, message):
    with pytest.raises(AttnvizError, match=message):
        checked(TrainConfig(**changes))


@pytest.mark.parametrize("data, message", [
    ({"epochs": "3"}, "should be int"),
    ({"jit_compile": 1}, "should be bool"),
    ({"epochs": True}, "should be int"),
    ({"colour": "red"}, "unknown keys"),
    ([], "JSON object"),
])
def test_from_dict_rejects_bad_json(data, message):
    with pytest.raises(AttnvizError, match=message):
        TrainConfig.from_dict(data)


def test_effective_config_is_what_runs_under_a_strategy():
    asked = TrainConfig(strategy="mirrored", jit_compile=True, steps_per_execution=32)
    assert asked.effective() == asked.replace(jit_compile=False, steps_per_execution=1)
    assert TrainConfig(jit_compile=True).effective() == TrainConfig(jit_compile=True)
