import pytest
import torch

from core.models import build_model, count_parameters, list_models, model_spec, register_model

RECIPE_MODELS = ("digits-cnn", "digit-net", "lenet5", "cnn-5x5", "net-10-20")


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("size", [8, 28])
def test_every_model_builds_for_both_input_sizes(name, size):
    model = build_model(name, image_size=size)
    assert model(torch.zeros(3, 1, size, size)).shape == (3, 10)
    assert count_parameters(model) > 0


def test_the_zoo_has_the_recipes_and_the_extra_architectures():
    assert set(RECIPE_MODELS) | {"mlp", "inception", "resnet", "fast-cnn"} <= set(list_models())


def test_recipe_layers_match_the_published_shapes():
    digits = build_model("digits-cnn", image_size=8)
    assert [type(m).__name__ for m in digits] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Flatten", "Linear", "Softmax"]
    assert digits[5].in_features == 256
    assert build_model("digit-net", image_size=28)[6].in_features == 2000
    lenet = build_model("lenet5", image_size=28)
    assert lenet[0].size == 32 and lenet[7].in_features == 400
    assert build_model("cnn-5x5", image_size=28)[7].in_features == 1568
    net = build_model("net-10-20", image_size=28)
    assert net[7].in_features == 320 and [type(m).__name__ for m in net][-2:] == ["Linear", "Linear"]


def test_parameter_counts_are_the_known_ones():
    assert count_parameters(build_model("lenet5", image_size=28)) == 61706
    assert count_parameters(build_model("net-10-20", image_size=28)) == 21840


def test_registry_refuses_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="already registered"):
        register_model("lenet5", title="x", description="x")(lambda **_: None)
    with pytest.raises(ValueError, match="Unknown model"):
        model_spec("alexnet")
    assert model_spec("digits-cnn").output == "probs" and model_spec("lenet5").output == "log_probs"
