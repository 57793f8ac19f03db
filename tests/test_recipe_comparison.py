"""A finished run of a preset is held to a figure at its own step count: the published one when it trained as the
published run did, the one measured here (bench/bench_recipes.py) at the same steps, or none, said in grey."""

from __future__ import annotations

from dataclasses import replace

from core.recipes import RECIPES, Measured, compare_run, like_steps_epochs
from ui.results import versus_reported

SUBSET = 14_262  # the offline MNIST subset's training images
LENET = replace(RECIPES["lenet5"], measured=(Measured(SUBSET, 5, 0.9860, 0.9850, 0.9870, 3),
                                             Measured(SUBSET, 21, 0.9890, 0.9880, 0.9900, 3)))


def settings(recipe=LENET, **changes) -> dict:
    """A run's saved settings: the recipe's, with `changes` (a seed, epochs or data folder change nothing)."""
    return recipe.settings(seed=7, data_dir="/somewhere", device="cpu", **changes).to_dict()


def test_like_for_like_epochs_take_as_many_steps_as_the_published_run():
    assert RECIPES["lenet5"].published_steps == 5 * 938  # 60,000 images in batches of 64
    assert like_steps_epochs(RECIPES["lenet5"], SUBSET) == 21  # 21 x 223 = 4,683 steps
    assert like_steps_epochs(RECIPES["net-10-20"], SUBSET) == 42 and like_steps_epochs(RECIPES["cnn-5x5"], SUBSET) == 42
    assert like_steps_epochs(RECIPES["digit-net"], 60_000) == 20  # full MNIST: the published epochs as they are
    assert like_steps_epochs(RECIPES["digits-cnn"], 1_347) == 1000  # published on the same data
    assert like_steps_epochs(RECIPES["fast-cnn-99"], SUBSET) == 8  # ours: nothing published, its own epochs


def test_a_run_as_long_as_the_published_one_on_full_mnist_is_held_to_the_published_figure():
    comparison = compare_run(LENET, settings(epochs=5), 60_000, 5)
    assert (comparison.accuracy, comparison.source) == (0.9772, "reported")
    assert "4,690 steps on 60,000 training images" in comparison.explanation
    shortfall = versus_reported(0.9394, comparison)
    assert shortfall["delta"] == "-3.78 % vs reported" and "delta_color" not in shortfall  # red: a real shortfall


def test_a_quarter_length_run_on_the_subset_is_held_to_what_was_measured_at_its_steps_not_to_the_published_figure():
    comparison = compare_run(LENET, settings(epochs=5), SUBSET, 5)
    assert (comparison.accuracy, comparison.source) == (0.9860, "measured")
    assert "1,115 steps (5 epochs) on 14,262 training images" in comparison.explanation
    below = versus_reported(0.9394, comparison)
    assert below["delta"] == "-4.66 % vs measured" and "delta_color" not in below  # outside what seeds 0-2 gave
    within = versus_reported(0.9853, comparison)
    assert within["delta"] == "-0.07 % vs measured" and within["delta_color"] == "off"  # inside the seeds' range
    assert within["help"].endswith("This run is within that.")
    near = versus_reported(0.9820, comparison)  # below all three seeds, but 0.4 point from their mean: alike
    assert near["delta"] == "-0.40 % vs measured" and near["delta_color"] == "off"
    assert "within 0.5 % of the mean counts as alike" in near["help"]
    stopped = compare_run(LENET, settings(epochs=21), SUBSET, 5)  # stopped at epoch 5: a constant rate, same steps
    assert stopped.accuracy == 0.9860
    as_published = compare_run(LENET, settings(epochs=21), SUBSET, 21)
    assert as_published.accuracy == 0.9890 and "4,683 steps (21 epochs)" in as_published.explanation


def test_a_figure_measured_with_one_seed_holds_runs_within_half_a_point_alike():
    one_seed = replace(LENET, measured=(Measured(SUBSET, 5, 0.9646, 0.9646, 0.9646, 1),))
    comparison = compare_run(one_seed, settings(epochs=5), SUBSET, 5)
    assert "one seed, so a run within 0.5% of it counts as alike" in comparison.explanation
    near = versus_reported(0.9612, comparison)
    assert near["delta"] == "-0.34 % vs measured" and near["delta_color"] == "off"
    far = versus_reported(0.9580, comparison)
    assert far["delta"] == "-0.66 % vs measured" and "delta_color" not in far


def test_a_run_at_a_step_count_nothing_was_measured_at_is_not_comparable_and_says_why_in_grey():
    comparison = compare_run(LENET, settings(epochs=7), SUBSET, 7)
    assert comparison.accuracy is None
    assert "This run took 1,561 steps (7 epochs) on 14,262 training images" in comparison.explanation
    assert "reports 97.72% after 4,690 steps" in comparison.explanation  # what the figures are, beside it
    assert "98.60% (98.50-98.70%, 3 seeds) after 1,115 steps" in comparison.explanation
    shown = versus_reported(0.95, comparison)
    assert shown["delta"] == "not comparable" and shown["delta_color"] == "off"
    assert "97.72 %" in shown["help"]  # the page's way of writing percentages
    unmeasured = compare_run(RECIPES["lenet5"], settings(RECIPES["lenet5"], epochs=5), 10_000, 5)
    assert unmeasured.accuracy is None  # not the published figure: 10,000 training images are not 60,000


def test_changed_settings_or_a_schedule_cut_short_compare_with_nothing():
    changed = compare_run(LENET, settings(epochs=5, learning_rate=0.01, batch_size=32), SUBSET, 5)
    assert changed.accuracy is None and "changed the recipe's batch size, learning rate" in changed.explanation
    flip = compare_run(LENET, settings(epochs=5, augment_flip=False), 60_000, 5)
    assert flip.accuracy is None and "flip" in flip.explanation
    fast = replace(RECIPES["fast-cnn-99"], measured=(Measured(SUBSET, 8, 0.991, 0.990, 0.992, 3),))
    assert compare_run(fast, settings(fast), SUBSET, 8).accuracy == 0.991
    cut = compare_run(fast, settings(fast), SUBSET, 6)  # one-cycle: its rate at epoch 6 of 8 is not a 6-epoch run's
    assert cut.accuracy is None and "before its learning-rate schedule ended" in cut.explanation
    assert compare_run(LENET, {"epochs": "many", "betas": 3}, SUBSET, 5).accuracy is None  # damaged: no figure


def test_a_run_as_published_within_the_seeds_measured_here_is_not_red_below_the_published_figure():
    digits = replace(RECIPES["digits-cnn"], measured=(Measured(1_347, 1000, 0.9830, 0.9756, 0.9867, 3),))
    comparison = compare_run(digits, settings(digits), 1_347, 1000)
    assert (comparison.accuracy, comparison.source) == (0.9867, "reported")
    within = versus_reported(0.9778, comparison)  # under the published figure, inside the seeds measured here
    assert within["delta"] == "-0.89 % vs reported" and within["delta_color"] == "off"
    assert "98.30 % (97.56-98.67 %, 3 seeds) after 14,000 steps" in within["help"]
    below = versus_reported(0.9711, comparison)  # lower than any seed measured here: a real shortfall, red
    assert below["delta"] == "-1.56 % vs reported" and "delta_color" not in below


def test_a_tie_is_a_tie_and_no_figure_means_no_delta():
    digits = replace(RECIPES["digits-cnn"], measured=())
    comparison = compare_run(digits, settings(digits), 1_347, 1000)
    assert versus_reported(0.98671, comparison) == {
        "delta": "same as reported", "delta_color": "off", "delta_arrow": "off",
        "help": "The recipe reports 98.67 % after 14,000 steps on 1,347 training images, as this run did."}
    assert versus_reported(None, comparison) == {"delta": None} and versus_reported(0.9, None) == {"delta": None}
