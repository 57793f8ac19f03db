from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter
from torch import nn

from core.images import load_image
from core.inference import (
    LOW_CONFIDENCE,
    Guess,
    ImagePrediction,
    NumberReading,
    load_default_model,
    model_inputs,
    predict_each,
    predict_image,
    predict_proba,
    read_number,
    read_number_each,
    saliency,
)
from core.models import build_model, list_models, model_spec, to_probs
from core.preprocess import (
    DIGITS_FORMAT,
    MNIST_FORMAT,
    NOT_A_DIGIT_LINE,
    NOT_A_STROKE,
    TOO_LITTLE_INK,
    preprocess,
    split_digits,
)
from core.store import LoadedRun
from core.training import normalized, scaled_pixels
from tests.drawn_digits import drawn, encoded, in_faint_pencil, on_transparent, photo_of


@pytest.fixture(scope="module")
def default_run() -> LoadedRun:
    return load_default_model()


def untrained_digits_run() -> LoadedRun:
    """An 8x8 run as the digits dataset makes them (values 0..16, not scaled), with seeded random weights."""
    torch.manual_seed(0)
    model = build_model("digits-cnn", image_size=8, num_classes=10).eval()
    return LoadedRun("digits-run", Path("digits-run"), {"model": "digits-cnn", "dataset": "digits"}, model, "logits",
                     DIGITS_FORMAT, 1.0, 4.9, 6.0, tuple("0123456789"))


def linear_run(weights: torch.Tensor) -> LoadedRun:
    """A softmax regression on 4x4 images, whose input gradient is known in closed form."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, weights.shape[0], bias=False)).eval()
    with torch.no_grad():
        model[1].weight.copy_(weights)
    return LoadedRun("linear", Path("linear"), {}, model, "logits", MNIST_FORMAT, 255.0, 0.0, 1.0,
                     tuple(str(i) for i in range(weights.shape[0])))


# ---- reading drawings, photos and files ---------------------------------------------------------------------------

@pytest.mark.parametrize("digit", range(10))
def test_every_digit_drawn_on_the_canvas_is_read(default_run, digit):
    answer = predict_image(default_run, np.asarray(drawn(digit)))
    assert answer.label == digit and answer.confidence > 0.9 and not answer.unsure


@pytest.mark.parametrize("digit", [0, 1, 4, 7, 9])
@pytest.mark.parametrize("style", [
    {"width": 6, "box": (200, 190, 262, 270)},  # small, in the bottom-right corner
    {"width": 3},  # a thin brush
    {"width": 45},  # a thick one
    {"width": 10, "box": (10, 60, 90, 140)},  # small, on the left edge
], ids=["small-in-a-corner", "thin", "thick", "small-on-the-edge"])
def test_small_off_centre_thin_and_thick_drawings_are_read(default_run, digit, style):
    answer = predict_image(default_run, drawn(digit, **style))
    assert answer.label == digit and answer.confidence > 0.9


@pytest.mark.parametrize("digit", [2, 3, 5, 7, 8])
def test_photos_of_dark_ink_on_unevenly_lit_paper_are_read(default_run, digit):
    answer = predict_image(default_run, load_image(encoded(photo_of(digit, seed=digit), "JPEG")).image)
    assert answer.label == digit and answer.confidence > 0.9


@pytest.mark.parametrize("ink", [(0, 0, 0, 255), (20, 60, 200, 255), (255, 255, 255, 255)], ids=["black", "blue", "white"])
def test_transparent_pngs_are_read_from_their_alpha_whatever_the_ink(default_run, ink):
    for digit in (3, 6):
        loaded = load_image(encoded(on_transparent(digit, ink), "PNG"), name="export.png")
        assert loaded.image.mode == "RGBA"
        assert predict_image(default_run, loaded.image).label == digit


@pytest.mark.parametrize("image", [
    Image.new("RGBA", (280, 280), (0, 0, 0, 255)), Image.new("RGBA", (280, 280), (0, 0, 0, 0)),
    Image.new("L", (300, 200), 255), drawn(1, width=2, box=(140, 140, 143, 143)),  # a dot, not a digit
], ids=["empty-canvas", "transparent-canvas", "white-sheet", "a-dot"])
def test_a_blank_image_gets_no_answer(default_run, image):
    answer = predict_image(default_run, image)
    assert answer.blank and answer.label is None and answer.confidence is None and not answer.unsure
    assert read_number(default_run, image).blank


def test_real_mnist_test_digits_are_read_as_well_as_the_model_was_measured(default_run, mnist_dir):
    from core.data import load_dataset

    mnist = load_dataset("mnist", mnist_dir)
    images, labels = mnist.test_images[:2000].numpy(), mnist.test_labels[:2000].numpy()
    as_given = predict_proba(default_run, images).argmax(axis=1)
    assert (as_given == labels).mean() > 0.985  # 99.15% on all 10,000
    sheets = [Image.fromarray(255 - image).resize((280, 280), Image.Resampling.BILINEAR) for image in images[:300]]
    redone = [predict_image(default_run, sheet).label for sheet in sheets]  # scanned on paper, 10x larger
    assert np.mean(np.array(redone) == labels[:300]) > 0.97


def test_unsure_below_low_confidence():
    processed = preprocess(drawn(7))
    spread = np.full(10, (1 - LOW_CONFIDENCE + 0.01) / 9)
    spread[3] = LOW_CONFIDENCE - 0.01
    assert ImagePrediction(processed, spread).unsure
    sure = np.full(10, 0.01)
    sure[3] = 0.91
    assert not ImagePrediction(processed, sure).unsure and ImagePrediction(processed, sure).label == 3


def canvas_with(shape: str, box: tuple[int, int, int, int], width: int = 18) -> Image.Image:
    """A dot ("ellipse"), a speck ("rectangle") or a stroke ("line") on the canvas, white on opaque black."""
    image = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    pen = ImageDraw.Draw(image)
    if shape == "line":
        pen.line([box[:2], box[2:]], fill=(255, 255, 255, 255), width=width)
    else:
        getattr(pen, shape)(box, fill=(255, 255, 255, 255))
    return image


@pytest.mark.parametrize("image, reason", [
    (canvas_with("ellipse", (131, 131, 149, 149)), NOT_A_STROKE),  # one click of the 18 px brush: was "0" at 92%
    (canvas_with("ellipse", (20, 230, 60, 270)), NOT_A_STROKE),
    (canvas_with("ellipse", (136, 136, 144, 144)), NOT_A_STROKE),  # was "8" at 83%
    (canvas_with("rectangle", (200, 60, 203, 63)), TOO_LITTLE_INK),
    (canvas_with("line", (20, 140, 260, 140)), NOT_A_DIGIT_LINE),  # was "2" at 88%
    (np.asarray(canvas_with("ellipse", (90, 90, 190, 190)).convert("L").resize((28, 28))), NOT_A_STROKE),
], ids=["brush-click", "dot-in-a-corner", "small-dot", "speck", "scratch-across", "dot-28x28-array"])
def test_ink_that_is_no_digit_gets_a_sentence_asking_for_a_bigger_digit_instead_of_a_label(default_run, image, reason):
    answer = predict_image(default_run, image)
    assert answer.blank and answer.label is None and answer.confidence is None and not answer.unsure
    assert answer.refusal == reason and answer.top_two == ()
    assert "bigger" in reason and reason.count(".") == 1  # one sentence, asking for a bigger digit
    assert [prediction.refusal for prediction in predict_each([default_run, untrained_digits_run()], image)] == \
        [reason, reason]


def test_a_real_digit_has_no_refusal_and_its_top_two_lead_with_the_answer(default_run):
    answer = predict_image(default_run, drawn(4))
    assert answer.refusal is None and answer.top_two[0] == Guess(4, answer.confidence)
    assert answer.top_two[1].probability == pytest.approx(float(np.sort(answer.probabilities)[-2]))


def test_a_low_confidence_answer_is_marked_and_carries_the_top_two():
    processed = preprocess(drawn(7))
    torn = np.array([0.02, 0.03, 0.01, 0.41, 0.02, 0.35, 0.04, 0.05, 0.03, 0.04])
    answer = ImagePrediction(processed, torn)
    assert answer.unsure and answer.label == 3 and LOW_CONFIDENCE == 0.6
    assert answer.top_two == (Guess(3, 0.41), Guess(5, 0.35))


# ---- several digits -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("number", ["1407", "2583", "96", "7"])
def test_a_row_of_digits_is_read_as_a_number(default_run, number):
    reading = read_number(default_run, drawn(number, size=(140 * len(number), 200), box=(10, 20, 140 * len(number) - 10, 180)))
    assert reading.text == number and len(reading.digits) == len(number)
    assert 0.5 < reading.confidence <= 1 and not reading.unsure
    lefts = [digit.preprocessed.ink_box[0] for digit in reading.digits]
    assert lefts == sorted(lefts)


def test_a_number_reading_joins_words_with_spaces_and_multiplies_confidences():
    processed = preprocess(drawn(1))
    first, second = np.array([0.05, 0.9, 0.05]), np.array([0.25, 0.25, 0.5])
    digits = (ImagePrediction(processed, first), ImagePrediction(processed, second))
    assert NumberReading(digits, ("0", "1", "2")).text == "12"
    assert NumberReading(digits, ("Shirt", "Bag", "Boot")).text == "Bag Boot"
    reading = NumberReading(digits, ("0", "1", "2"))
    assert reading.confidence == pytest.approx(0.9 * 0.5) and reading.unsure
    assert NumberReading((), ("0", "1")).text == "" and NumberReading((), ("0", "1")).confidence == 0.0


# ---- every model at once ------------------------------------------------------------------------------------------

def test_each_run_gets_the_image_in_its_own_input_format(default_run):
    digits_run = untrained_digits_run()
    image = drawn(4)
    mnist_answer, digits_answer, again = predict_each([default_run, digits_run, default_run], image)
    assert mnist_answer.preprocessed.pixels.shape == (28, 28) and mnist_answer.label == 4
    assert digits_answer.preprocessed.pixels.shape == (8, 8) and digits_answer.preprocessed.pixels.max() == 16
    assert np.array_equal(digits_answer.preprocessed.pixels, preprocess(image, DIGITS_FORMAT).pixels)
    assert np.allclose(digits_answer.probabilities, predict_image(digits_run, image).probabilities, atol=1e-6)
    assert again.preprocessed is mnist_answer.preprocessed  # preprocessed once per format


def test_each_run_reads_the_number_split_in_its_own_format(default_run):
    digits_run = untrained_digits_run()
    row = drawn("31", size=(300, 180))
    mnist_reading, digits_reading = read_number_each([default_run, digits_run], row)
    assert mnist_reading.text == "31"
    assert [d.preprocessed.pixels.shape for d in digits_reading.digits] == [(8, 8), (8, 8)]
    expected = split_digits(row, DIGITS_FORMAT)
    assert all(np.array_equal(d.preprocessed.pixels, e.pixels) for d, e in zip(digits_reading.digits, expected))
    assert digits_reading.text == read_number(digits_run, row).text


# ---- saliency -----------------------------------------------------------------------------------------------------

def test_saliency_matches_the_closed_form_gradient_of_softmax_regression():
    weights = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    run = linear_run(weights)
    pixels = np.random.default_rng(0).integers(0, 256, (4, 4)).astype(np.uint8)
    inputs = pixels.astype(np.float64).ravel() / 255.0
    logits = weights.double().numpy() @ inputs
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    for target in range(3):
        gradient = weights.double().numpy()[target] - probabilities @ weights.double().numpy()  # d log p_t / dx
        expected = np.abs(gradient) / np.abs(gradient).max()
        assert np.allclose(saliency(run, pixels, target), expected.reshape(4, 4), atol=1e-5)
    assert np.allclose(saliency(run, pixels), saliency(run, pixels, int(probabilities.argmax())))


def test_saliency_agrees_with_finite_differences_on_the_default_model(default_run):
    pixels = preprocess(drawn(5)).pixels.astype(np.float64)
    target = 3  # not the answer: log p(3) is far from 0, so float32 resolves its changes
    strength = saliency(default_run, pixels, target=target)
    strongest = np.argsort(strength.ravel())[-12:]  # where the signal is far above rounding noise

    def log_p(image: np.ndarray) -> float:
        return float(np.log(predict_proba(default_run, image[None])[0, target].astype(np.float64)))

    changes = []
    for index in strongest:
        up, down = pixels.copy(), pixels.copy()
        up.flat[index] += 0.5
        down.flat[index] -= 0.5
        changes.append(abs(log_p(up) - log_p(down)))  # central difference over one grey level
    changes, predicted = np.array(changes), strength.flat[strongest]
    scale = float(changes @ predicted / (predicted @ predicted))
    assert np.allclose(changes, scale * predicted, rtol=0.1)
    assert strength.shape == (28, 28) and strength.min() >= 0 and strength.max() == pytest.approx(1.0)


def test_saliency_leaves_the_shared_model_untouched_and_works_in_inference_mode(default_run):
    pixels = preprocess(drawn(2)).pixels
    before = {name: tensor.clone() for name, tensor in default_run.model.state_dict().items()}
    plain = saliency(default_run, pixels)
    with torch.inference_mode():
        assert np.allclose(saliency(default_run, pixels), plain)
    assert all(parameter.grad is None for parameter in default_run.model.parameters())
    assert all(torch.equal(before[name], tensor) for name, tensor in default_run.model.state_dict().items())
    assert not default_run.model.training


@pytest.mark.parametrize("digit", [0, 4, 7])
def test_saliency_looks_at_the_digit_and_depends_on_the_target(default_run, digit):
    pixels = preprocess(drawn(digit)).pixels
    near_ink = np.zeros((28, 28), bool)
    rows, cols = np.nonzero(pixels)
    near_ink[max(rows.min() - 2, 0):rows.max() + 3, max(cols.min() - 2, 0):cols.max() + 3] = True
    for samples in (1, 24):
        strength = saliency(default_run, pixels, samples=samples)
        assert strength[near_ink].mean() > 1.8 * strength[~near_ink].mean()  # the far border hardly matters
    answer, one = saliency(default_run, pixels, digit), saliency(default_run, pixels, 1)  # evidence for a 1 lies elsewhere
    assert np.corrcoef(answer.ravel(), one.ravel())[0, 1] < 0.8


def test_smooth_saliency_is_repeatable_and_keeps_the_plain_map_shape(default_run):
    pixels = preprocess(drawn(3)).pixels
    smooth = saliency(default_run, pixels, samples=16)
    assert np.array_equal(smooth, saliency(default_run, pixels, samples=16))  # same seed, same map
    assert not np.array_equal(smooth, saliency(default_run, pixels, samples=16, seed=1))
    assert np.corrcoef(smooth.ravel(), saliency(default_run, pixels).ravel())[0, 1] > 0.4
    assert smooth.max() == pytest.approx(1.0) and smooth.min() >= 0


def test_saliency_of_an_8x8_run_is_8x8():
    run = untrained_digits_run()
    strength = saliency(run, preprocess(drawn(6), DIGITS_FORMAT).pixels)
    assert strength.shape == (8, 8) and strength.max() == pytest.approx(1.0)


# ---- folded batch norms -------------------------------------------------------------------------------------------

def trained_looking(name: str, image_size: int) -> nn.Module:
    """A zoo model in eval mode whose batch norms hold running statistics and affine weights far from their initial
    ones, as after training (folding the initial ones would change almost nothing)."""
    torch.manual_seed(1)
    model = build_model(name, image_size=image_size)
    for layer in model.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                layer.running_mean.uniform_(-0.5, 0.5)
                layer.running_var.uniform_(0.2, 3.0)
                layer.weight.uniform_(0.5, 2.0)
                layer.bias.uniform_(-0.3, 0.3)
    return model.eval()


@pytest.mark.parametrize("name", list_models())
def test_prediction_folds_batch_norms_and_answers_as_the_model_itself(name):
    from core.inference import _answering_layers

    image_size = 8 if name.startswith("digits") else 28
    model = trained_looking(name, image_size)
    run = LoadedRun(name, Path(name), {}, model, model_spec(name).output, MNIST_FORMAT, 255.0, 0.13, 0.31,
                    tuple("0123456789"))
    pixels = np.stack([np.asarray(drawn(digit, mode="L", background=0, ink=255).resize((image_size,) * 2))
                       for digit in range(10)])
    with torch.inference_mode():
        expected = to_probs(model(model_inputs(run, pixels)), run.output).numpy()
    for batch in (pixels[:1], pixels):  # one image (torch's own kernels) and a batch
        np.testing.assert_allclose(predict_proba(run, batch), expected[:len(batch)], atol=1e-5)
    assert not any(isinstance(part, (nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout))
                   for layer in _answering_layers(model) for part in layer.modules())


def batch_norms(layers) -> int:
    return sum(isinstance(part, nn.BatchNorm2d) for layer in layers for part in layer.modules())


def test_folding_opens_nested_sequences_and_leaves_out_every_kind_of_dropout():
    from core.inference import _answering_layers, model_output

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sequential(nn.BatchNorm2d(4), nn.ReLU()), nn.Dropout2d(0.3),
                          nn.Flatten(), nn.Linear(4 * 26 * 26, 5), nn.Sequential(nn.BatchNorm1d(5)), nn.AlphaDropout())
    for layer in model.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.running_mean.uniform_(-1, 1)
            layer.running_var.uniform_(0.5, 2)
    model.eval()
    inputs = torch.randn(3, 1, 28, 28)
    with torch.inference_mode():  # folded on a first call in inference mode ...
        np.testing.assert_allclose(model_output(model, inputs), model(inputs), atol=1e-5)
    assert [type(layer) for layer in _answering_layers(model)] == [nn.Conv2d, nn.ReLU, nn.Flatten, nn.Linear]
    assert model_output(model, inputs.requires_grad_()).requires_grad  # ... its weights still usable with autograd


def test_a_model_in_training_mode_is_answered_by_the_model_itself(default_run):
    from core.inference import _answering_layers

    model = build_model("fast-cnn", image_size=28).train()
    assert _answering_layers(model) == (model,)  # its batch norms learn from each batch: nothing to fold
    assert batch_norms(default_run.model) == 2 and batch_norms(_answering_layers(default_run.model)) == 0


# ---- threads ------------------------------------------------------------------------------------------------------

@pytest.fixture
def two_threads() -> Iterator[None]:
    """Torch on 2 threads, the app's own count on 2 cores, for one test (the suite runs on one: tests/conftest.py)."""
    suite = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(suite)


def kernel_settings() -> tuple[int, bool]:
    return torch.get_num_threads(), torch.backends.mkldnn.enabled


def test_single_images_run_on_one_thread_and_torchs_own_kernels_and_overlapping_pages_restore_both(default_run,
                                                                                                  two_threads):
    import threading

    from core.inference import small_batch_kernels

    before = kernel_settings()
    assert before == (2, True)
    seen: list[tuple[int, bool]] = []
    first_inside, second_done = threading.Event(), threading.Event()

    def first_page() -> None:  # Streamlit runs each session's script in a thread of its own
        with small_batch_kernels():
            seen.append(kernel_settings())
            first_inside.set()
            second_done.wait(10)

    def second_page() -> None:  # starts while the first is inside, ends before it
        first_inside.wait(10)
        with small_batch_kernels():
            seen.append(kernel_settings())
        second_done.set()

    threads = [threading.Thread(target=first_page), threading.Thread(target=second_page)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [(1, False), (1, False)] and kernel_settings() == before


def test_the_model_sees_one_thread_and_torchs_own_kernels_for_few_images_and_everything_for_many(default_run,
                                                                                                 two_threads,
                                                                                                 monkeypatch):
    import core.inference

    images = np.stack([preprocess(drawn(d)).pixels for d in range(10)] * 8)  # 80 images: above SMALL_BATCH
    seen: list[tuple[int, bool]] = []
    answer = core.inference.model_output  # predictions run the folded layers, saliency the model itself

    def watched(model, inputs):
        seen.append(kernel_settings())
        return answer(model, inputs)

    monkeypatch.setattr(core.inference, "model_output", watched)
    hook = default_run.model.register_forward_pre_hook(lambda module, inputs: seen.append(kernel_settings()))
    try:
        one, many = predict_proba(default_run, images[:1]), predict_proba(default_run, images)
        saliency(default_run, images[0], samples=4)
    finally:
        hook.remove()
    assert seen == [(1, False), (2, True), (1, False)] and kernel_settings() == (2, True)
    assert np.allclose(one, many[:1], atol=1e-5)  # the two kinds of kernels agree


@pytest.mark.parametrize("digit", range(10))
def test_a_digit_in_faint_pencil_is_read(default_run, digit):
    """About 26 grey levels darker than the paper: too faint for the 40 a noisy picture needs, plain on a quiet one."""
    assert predict_image(default_run, in_faint_pencil(digit, seed=digit)).label == digit


@pytest.mark.parametrize("noise", [1.0, 3.0, 6.0])
def test_a_quiet_or_grainy_sheet_with_nothing_on_it_stays_blank(default_run, noise):
    assert predict_image(default_run, in_faint_pencil(None, noise=noise)).blank


def drawn_with_a_thick_brush(digit: np.ndarray, side: int) -> Image.Image:
    """Real handwriting (an MNIST digit) as a thick brush would leave it: strokes widened by 4 px at 28x28 (about
    2.5x MNIST's), scaled to `side` px on a 280 px black canvas."""
    thick = Image.fromarray(digit).filter(ImageFilter.MaxFilter(5))
    canvas = Image.new("L", (280, 280), 0)
    canvas.paste(thick.resize((side, side), Image.Resampling.BILINEAR), (40, 60))
    return canvas


@pytest.mark.parametrize("side", [50, 200])
def test_real_digits_drawn_with_a_thick_brush_are_read(default_run, mnist_dir, side):
    """Thinned towards MNIST's strokes first: 82 % of these were read right before, 92-94 % after."""
    from core.data import load_dataset

    mnist = load_dataset("mnist", mnist_dir)
    images, labels = mnist.test_images[:200].numpy(), mnist.test_labels[:200].tolist()
    right = sum(predict_image(default_run, drawn_with_a_thick_brush(image, side)).label == label
                for image, label in zip(images, labels))
    assert right >= 180, f"{right} of 200 read right"


@pytest.mark.parametrize("scale, mean, std", [(255.0, 0.1307, 0.3081), (255.0, 0.5, 0.5), (16.0, 0.0, 1.0),
                                              (255.0, 0.2860, 0.3530)])
def test_an_arrays_model_input_is_the_engines_normalisation_bit_for_bit(scale, mean, std):
    run = SimpleNamespace(pixel_scale=scale, mean=mean, std=std)  # all model_inputs reads of a run
    every_value = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    engine = normalized(scaled_pixels(torch.from_numpy(every_value), scale), mean, std)
    assert torch.equal(model_inputs(run, every_value), engine)
    assert torch.equal(model_inputs(run, every_value[0]), engine)  # one image (H, W)
    assert torch.equal(model_inputs(run, torch.from_numpy(every_value)), engine)
    read_only = np.frombuffer(every_value.tobytes(), dtype=np.uint8).reshape(1, 16, 16)
    assert torch.equal(model_inputs(run, read_only), engine) and read_only[0, 0, 1] == 1  # a copy, source untouched
    as_numpy = SimpleNamespace(pixel_scale=np.float64(scale), mean=np.float64(mean), std=np.float64(std))
    assert torch.equal(model_inputs(as_numpy, every_value), engine)  # numpy's own floats would sum in float64
