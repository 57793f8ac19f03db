import numpy as np
import pytest
import torch

from core.data import load_dataset
from core.evaluation import (cell_indices, confusion_matrix, misclassified, per_class_accuracy, predict_split,
                             run_fits_dataset, split_arrays)
from core.inference import load_default_model
from core.record import RecordedTraining
from core.store import RunStore
from core.training import TrainConfig
from ui.charts import (MARK_COLOR, confusion_figure, grid_cell_size, image_grid,
                       per_class_accuracy_figure)

QUICK = TrainConfig(model="digits-cnn", dataset="digits", epochs=3, batch_size=100, optimizer="sgd",
                    learning_rate=0.5, loss="bce-one-hot")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("runs"))
    recorded = RecordedTraining(QUICK, store)
    assert list(recorded.events())[-1].status == "done"
    return store.load(recorded.run_id)


def test_predict_split_on_digits_gives_the_recorded_test_accuracy(digits_run):
    data = load_dataset("digits")
    probabilities = predict_split(digits_run, data, "test")
    assert probabilities.shape == (len(data.test_labels), 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    accuracy = float((probabilities.argmax(1) == data.test_labels.numpy()).mean())
    assert accuracy == pytest.approx(digits_run.meta["final"]["test_accuracy"], abs=1e-6)  # same 0..16 pixel scale


def test_predict_split_limit_takes_the_first_images_of_the_split(digits_run):
    data = load_dataset("digits")
    first = predict_split(digits_run, data, "train", limit=50)
    assert first.shape == (50, 10)
    np.testing.assert_allclose(first, predict_split(digits_run, data, "train")[:50], atol=1e-6)
    assert predict_split(digits_run, data, "test", limit=0).shape == (0, 10)


def test_the_default_model_reads_mnist_at_its_published_accuracy(mnist_dir):
    data, run = load_dataset("mnist", mnist_dir), load_default_model()
    probabilities = predict_split(run, data, "test", limit=2000)
    accuracy = float((probabilities.argmax(1) == data.test_labels[:2000].numpy()).mean())
    assert accuracy > 0.97  # a wrong pixel scale (0..255 unscaled) would give about 10%


def test_a_run_for_other_images_is_refused_with_a_sentence(digits_run, mnist_dir):
    mnist = load_dataset("mnist", mnist_dir)
    assert "8x8" in run_fits_dataset(digits_run, mnist)
    with pytest.raises(ValueError, match="not on mnist"):
        predict_split(digits_run, mnist, "test", limit=10)
    with pytest.raises(ValueError, match="split"):
        split_arrays(load_dataset("digits"), "validation")  # type: ignore[arg-type]


def test_confusion_matrix_against_a_hand_count():
    labels = np.array([0, 0, 1, 1, 1, 2])
    predictions = np.array([0, 1, 1, 1, 2, 2])
    confusion = confusion_matrix(labels, predictions, 4)
    expected = np.array([[1, 1, 0, 0], [0, 2, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    assert confusion.dtype == np.int64 and (confusion == expected).all()
    np.testing.assert_allclose(per_class_accuracy(confusion), [0.5, 2 / 3, 1.0, 0.0])  # class 3 is empty: 0, not NaN


def test_confusion_matrix_matches_scikit_learn_on_random_labels():
    from sklearn.metrics import confusion_matrix as reference

    rng = np.random.default_rng(0)
    labels, predictions = rng.integers(0, 10, 500), rng.integers(0, 10, 500)
    assert (confusion_matrix(labels, predictions, 10) == reference(labels, predictions, labels=range(10))).all()
    assert (confusion_matrix(torch.as_tensor(labels), predictions, 10).sum() == 500)


def test_confusion_matrix_refuses_out_of_range_and_mismatched_input():
    with pytest.raises(ValueError, match="0..2"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="2 labels but 3 predictions"):
        confusion_matrix(np.array([0, 1]), np.array([0, 1, 2]), 3)
    assert confusion_matrix(np.array([], dtype=int), np.array([], dtype=int), 3).sum() == 0


def test_misclassified_and_cell_indices():
    labels = np.array([3, 5, 5, 3, 8])
    predictions = np.array([3, 3, 5, 8, 8])
    assert misclassified(labels, predictions).tolist() == [1, 3]
    assert cell_indices(labels, predictions, 5, 3).tolist() == [1]
    assert cell_indices(labels, predictions, 3, 3).tolist() == [0]
    assert cell_indices(labels, predictions, 0, 0).tolist() == []


def test_confusion_figure_cells_carry_true_predicted_and_count():
    confusion = np.array([[5, 1], [0, 4]])
    figure = confusion_figure(confusion, ["cat", "dog"])
    heatmap, targets = figure.data
    assert heatmap.type == "heatmap" and list(heatmap.y) == ["cat", "dog"] and list(heatmap.x) == ["cat", "dog"]
    assert np.asarray(heatmap.text).tolist() == [[5, 1], [0, 4]]
    cells = {(y, x): tuple(c) for x, y, c in zip(targets.x, targets.y, targets.customdata)}
    assert cells[("cat", "dog")] == (0, 1, 1)  # true cat, predicted dog, one sample
    assert cells[("dog", "dog")] == (1, 1, 4)


def test_confusion_figure_with_an_empty_class_has_no_nan():
    figure = confusion_figure(np.array([[0, 0], [1, 3]]), ["a", "b"])
    assert np.isfinite(np.asarray(figure.data[0].z, dtype=float)).all()


def test_per_class_accuracy_figure_marks_the_worst_class():
    figure = per_class_accuracy_figure(np.array([0.9, 0.0, 1.0]), ["0", "1", "2"])
    assert list(figure.data[0].marker.color) == ["#1f77b4", "#d62728", "#1f77b4"]
    figures = list(figure.data[0].textfont.color)  # at 0 % there is no bar to be red: its figure is
    assert figures[1] == "#d62728" and figures[0] == figures[2] != "#d62728"


def test_each_class_accuracy_is_written_beside_its_bar_at_a_readable_size():
    bars = per_class_accuracy_figure(np.linspace(0.98, 0.998, 10), [str(c) for c in range(10)]).data[0]
    assert bars.orientation == "h" and list(bars.y) == [str(c) for c in range(10)]  # a row a class: room for text
    assert bars.text[0] == "98.0 %" and bars.textposition == "outside"
    assert bars.textfont.size >= 12 and bars.constraintext == "none"  # plotly may not shrink it to the bar


def test_image_grid_places_scaled_tiles_and_marks_borders():
    images = np.zeros((5, 8, 8), dtype=np.uint8)
    images[2] = 16  # white in digits' 0..16 range
    mosaic = image_grid(images, [str(i) for i in range(5)], columns=3, max_value=16, marked=[False, True, False, False, False])
    cell_w, cell_h = grid_cell_size((8, 8), 7)
    assert mosaic.size == (3 * cell_w, 2 * cell_h)
    pixels = np.asarray(mosaic)
    assert (pixels[10, 2 * cell_w + 10] == 255).all()  # tile 2 is white
    assert (pixels[10, 10] == 0).all()  # tile 0 is black
    assert tuple(pixels[1, cell_w + 1]) == MARK_COLOR  # tile 1's border is red
    assert tuple(pixels[1, 1]) == (255, 255, 255)  # tile 0 has none


def test_image_grid_refuses_mismatched_captions():
    with pytest.raises(ValueError, match="captions"):
        image_grid(np.zeros((3, 28, 28), dtype=np.uint8), ["a"], columns=2)
