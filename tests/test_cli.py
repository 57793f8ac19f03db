import io
import json
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core.cli import main
from core.inference import DEFAULT_MODEL_DIR
from tests.drawn_digits import png_declaring

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, check_code: int | None = 0) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    if check_code is not None:
        assert done.returncode == check_code, done.stderr
    return done


def test_recipes_lists_every_preset_with_its_reported_accuracy():
    out = cli("recipes").stdout
    for name in ("digits-cnn", "digit-net", "lenet5", "cnn-5x5", "net-10-20", "fast-cnn-99", "quick-cnn-99"):
        assert name in out
    assert "98.67%" in out and "97.72%" in out


@pytest.mark.slow  # a real training in a fresh process: the suite's slowest non-browser tests
def test_train_json_ends_with_the_run_summary(tmp_path):
    done = cli("train", "--recipe", "digits-cnn", "--epochs", "30", "--runs-dir", str(tmp_path), "--json")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("run_id", "run_dir", "dataset", "model", "epochs", "test_accuracy", "train_seconds", "images_per_second"):
        assert key in summary, key
    assert summary["epochs"] == 30 and summary["test_accuracy"] > 0.9 and Path(summary["run_dir"]).is_dir()
    assert "epoch 30/30" in done.stderr
    listed = cli("runs", "--runs-dir", str(tmp_path), "--json").stdout.strip().splitlines()
    assert json.loads(listed[0])["run_id"] == summary["run_id"]


@pytest.mark.slow  # a real training in a fresh process: the suite's slowest non-browser tests
def test_train_on_the_mnist_subset(tmp_path, mnist_dir):
    done = cli("train", "--recipe", "net-10-20", "--data-dir", str(mnist_dir), "--epochs", "1", "--runs-dir",
               str(tmp_path), "--json")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["dataset"] == "mnist" and summary["test_accuracy"] > 0.85  # 1 subset epoch = 223 steps


@pytest.mark.parametrize("args", [  # a process each: what a shell sees (the settings that need torch to judge are
    # checked in process below, as a fresh process spends seconds importing it)
    ["train", "--lr", "0"], ["train", "--lr", "-1"], ["train", "--batch-size", "0"], ["train", "--epochs", "0"],
    ["train", "--model", "alexnet"], ["frobnicate"], [],
])
def test_bad_arguments_exit_2_with_one_line(args, tmp_path):
    extra = ["--runs-dir", str(tmp_path)] if args and args[0] == "train" else []
    done = cli(*args, *extra, check_code=None)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error:")
    assert not list(tmp_path.iterdir())  # nothing saved


@pytest.mark.parametrize("args, words", [
    (["--lr", "nan"], "--lr: must be a positive number"), (["--lr", "inf"], "--lr: must be a positive number"),
    (["--lr", "-0.01"], "--lr: must be a positive number"), (["--lr", "abc"], "--lr: must be a number"),
    (["--recipe", "digits-cnn", "--lr", "0"], "--lr: must be a positive number"),
    (["--epochs", "-3"], "--epochs: must be at least 1"), (["--epochs", "1.5"], "--epochs: must be a whole number"),
    (["--epochs", "1000000"], "epochs must be at most 10,000"),
    (["--batch-size", "-1"], "--batch-size: must be at least 1"), (["--train-limit", "0"], "--train-limit"),
    (["--train-limit", "50", "--batch-size", "64"], "batch size 64 is larger than the 50 training images"),
    (["--recipe", "digits-cnn", "--batch-size", "2000"], "batch size 2000 is larger than the"),
    (["--recipe", "lenet5", "--model", "alexnet"], "alexnet"), (["--dataset", "cifar", "--model", "lenet5"], "cifar"),
    (["--dataset", "cifar"], "cifar"), (["--recipe", "nope"], "nope"),
    (["--batch-size", "5000", "--dataset", "digits"], "batch size 5000 is larger than the"),
    (["--optimizer", "rmsprop"], "rmsprop"), (["--schedule", "cosine2"], "cosine2"), (["--seed", "x"], "--seed"),
    (["--seed", str(2**64)], "seed must be a whole number from 0 to 9,223,372,036,854,775,807"),
    (["--seed", "-1"], "seed must be a whole number from 0 to 9,223,372,036,854,775,807"),
    (["--processes", "999"], "--processes: at most"),  # each a whole torch: never 999 of them
    # --settings is JSON: any type may come in its place (each of these was a traceback or a saved "failed" run)
    *[(["--dataset", "digits", "--settings", json.dumps(settings)], words) for settings, words in [
        ({"epochs": "1"}, "epochs must be a whole number, not '1'"), ({"epochs": 1.5}, "epochs must be a whole number"),
        ({"label_smoothing": "0.1"}, "label smoothing must be a number"), ({"momentum": None}, "momentum must be"),
        ({"betas": "ab"}, "betas must be two numbers"), ({"betas": [0.9]}, "betas must be two numbers"),
        ({"betas": 5}, "betas must be two numbers"), ({"model": ["x"]}, "model must be one line of text"),
        ({"model": {}}, "model must be one line of text"), ({"device": "nonsense"}, "device must be auto, cpu"),
        ({"device": "meta"}, "device must be auto, cpu"), ({"data_dir": 5}, "data dir must be one line of text"),
        ({"batch_size": True}, "batch size must be a whole number"), ({"test_batch_size": 1.5}, "test batch size"),
        ({"train_limit": 2.5}, "train limit must be a whole number"), ({"augment_flip": "yes"}, "augment flip must"),
        ({"step_epochs": 1.5}, "step epochs must be a whole number"),
        ({"progress_every": -5}, "progress every must not be negative"),
        ({"normalize_std": 1e-300}, "normalisation std must be a number from 1e-06"),  # "diverged: lower the rate"
        ({"normalize_mean": 1e300}, "normalisation mean must be a number from")]],
    *([] if __import__("torch").cuda.is_available() else [
        (["--dataset", "digits", "--settings", '{"device": "cuda:7"}'], "needs a CUDA GPU")]),
])
def test_more_settings_out_of_range_exit_2_with_one_line(args, words, tmp_path, capsys):
    code = main(["train", *args, "--runs-dir", str(tmp_path / "runs")], out=io.StringIO())  # in process: no 5 s start
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error:") and words in err, err
    assert not (tmp_path / "runs").exists()


@pytest.fixture
def pickle_that_touches(tmp_path) -> tuple[bytes, Path]:
    """The classic os.system pickle, checked live (it creates its marker when unpickled), then reset."""
    marker = tmp_path / "created-by-a-pickle"
    data = f"cos\nsystem\n(S{f'touch {marker}'!r}\ntR.".encode()
    pickle.loads(data)
    assert marker.exists()
    marker.unlink()
    return data, marker


@pytest.mark.parametrize("place", ["as weights", "as meta", "--run absolute path", "--run relative path"])
def test_predict_refuses_a_pickled_checkpoint_and_never_runs_it(tmp_path, capsys, pickle_that_touches, place):
    data, marker = pickle_that_touches
    runs, image = tmp_path / "runs", tmp_path / "one.png"
    run = shutil.copytree(DEFAULT_MODEL_DIR, runs / "evil-run")
    weights = run / json.loads((run / "meta.json").read_text())["weights_file"]
    {"as weights": weights, "as meta": run / "meta.json"}.get(place, run / "model.pt").write_bytes(data)
    run_arg = {"--run absolute path": str(run / "model.pt"), "--run relative path": "../evil-run/model.pt"}
    draw_canvas_png(image)
    code = main(["predict", str(image), "--run", run_arg.get(place, "evil-run"), "--runs-dir", str(runs)],
                out=io.StringIO())
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("error:"), err
    assert not marker.exists()


def test_missing_mnist_offline_exits_1_with_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-c", (
        "import sys, torchvision.datasets as d\n"
        "def offline(*a, **k): raise OSError('offline')\n"
        "d.MNIST = offline\n"
        "from core.cli import main\n"
        f"sys.exit(main(['train', '--dataset', 'mnist', '--data-dir', {str(tmp_path)!r}, '--runs-dir', {str(tmp_path)!r}]))")],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and "digits dataset works now" in done.stderr


def draw_digit_photo(path: Path) -> None:
    """A dark 7 written on light, unevenly lit paper, like a phone photo."""
    gradient = np.linspace(200, 245, 400)[None, :].repeat(300, 0)
    noise = np.random.default_rng(0).normal(0, 4, (300, 400))
    image = Image.fromarray(np.clip(gradient + noise, 0, 255).astype(np.uint8)).convert("RGB")
    pen = ImageDraw.Draw(image)
    pen.line([(150, 70), (250, 70), (185, 240)], fill=(35, 35, 45), width=14, joint="curve")
    image.save(path, "JPEG", quality=90)


def draw_canvas_png(path: Path) -> None:
    """White strokes of a 1 on a transparent 280x280 canvas, as the drawing widget saves it."""
    image = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    ImageDraw.Draw(image).line([(140, 50), (140, 230)], fill=(255, 255, 255, 255), width=18)
    image.save(path)


def test_predict_reads_a_photo_and_a_transparent_canvas_with_the_default_model(tmp_path):
    photo, canvas, blank = tmp_path / "seven.jpg", tmp_path / "one.png", tmp_path / "blank.png"
    draw_digit_photo(photo)
    draw_canvas_png(canvas)
    Image.new("L", (100, 100), 255).save(blank)
    lines = cli("predict", str(photo), str(canvas), str(blank), "--json").stdout.strip().splitlines()
    answers = [json.loads(line) for line in lines]
    assert [a["digit"] for a in answers] == [7, 1, None]
    assert len(answers[0]["probabilities"]) == 10 and abs(sum(answers[0]["probabilities"]) - 1) < 1e-3
    assert answers[2]["probabilities"] is None


def test_predict_answers_many_files_in_batches_as_one_by_one(tmp_path, capsys, monkeypatch):
    import core.cli
    from core.images import load_image
    from core.inference import load_default_model, predict_image
    from tests.drawn_digits import drawn, photo_of

    monkeypatch.setattr(core.cli, "PREDICT_BATCH", 4)  # 11 files: three batches, a bad file and a blank in them
    paths = []
    for index in range(11):
        path = tmp_path / f"{index:02d}.png"
        if index == 5:
            path.write_text("not a picture")
        elif index == 6:
            Image.new("L", (100, 100), 255).save(path)
        elif index == 9:
            path = path.with_suffix(".jpg")
            photo_of(4, seed=index).save(path, quality=90)
        else:
            drawn(index % 10, width=(6, 18, 30)[index % 3]).save(path)
        paths.append(path)
    out = io.StringIO()
    code = main(["predict", "--json", *map(str, paths)], out=out)
    errors = capsys.readouterr().err
    assert code == 1 and errors.count("\n") == 1 and "05.png" in errors
    answers = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [answer["image"] for answer in answers] == [str(path) for path in paths if path.name != "05.png"]
    run = load_default_model()
    for answer in answers:
        alone = predict_image(run, load_image(Path(answer["image"])).image)  # one file at a time
        assert answer["digit"] == alone.label
        if alone.blank:
            assert answer["probabilities"] is None
        else:
            assert np.abs(np.array(answer["probabilities"]) - alone.probabilities).max() < 1e-5


def test_predict_refuses_a_non_image_with_one_line_and_exit_1(tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("this is text, not a picture")
    done = cli("predict", str(fake), check_code=1)
    assert len(done.stderr.strip().splitlines()) == 1 and "notes.png" in done.stderr


def test_predict_answers_a_jpeg_cut_short_and_says_what_it_left_out(tmp_path, capsys):
    image = Image.new("RGB", (120, 120), (255, 255, 255))
    ImageDraw.Draw(image).line([(30, 25), (90, 25), (55, 100)], fill=(0, 0, 0), width=10)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(buffer.getvalue()[:int(len(buffer.getvalue()) * 0.9)] + b"\xff\xd9")  # closed again: no error
    out = io.StringIO()
    assert main(["predict", str(cut)], out=out) == 0
    errors = capsys.readouterr().err
    assert errors.count("\n") == 1 and errors.startswith(f"{cut}: note: cut.jpg seems cut short")
    assert out.getvalue().startswith(f"{cut}: ")


def test_predict_with_an_unknown_run_is_one_line(tmp_path):
    done = cli("predict", "x.png", "--run", "nope", "--runs-dir", str(tmp_path), check_code=1)
    assert done.stderr.count("\n") == 1 and "no run called 'nope'" in done.stderr


def test_runs_lists_good_runs_and_names_each_damaged_one_with_its_sentence(tmp_path, capsys):
    runs = tmp_path / "runs"
    shutil.copytree(DEFAULT_MODEL_DIR, runs / "good-run")
    malformed = {"big-pid": {"pid": 2**70, "status": "running"}, "number-date": {"created_at": 1700000000},
                 "text-accuracy": {"final": {"test_accuracy": "0.99"}}, "text-seconds": {"train_seconds": "12.5"}}
    for run_id, change in malformed.items():
        folder = shutil.copytree(DEFAULT_MODEL_DIR, runs / run_id)
        (folder / "meta.json").write_text(json.dumps({**json.loads((folder / "meta.json").read_text()), **change}))
    out = io.StringIO()
    assert main(["runs", "--runs-dir", str(runs)], out=out) == 0
    lines = {line.split()[0]: line for line in out.getvalue().splitlines()}
    assert lines["good-run"].split()[1:3] == ["done", "99.15%"]
    for run_id, change in malformed.items():
        assert lines[run_id].split()[1] == "damaged" and f"its {next(iter(change))}" in lines[run_id], lines[run_id]
    out = io.StringIO()
    assert main(["runs", "--runs-dir", str(runs), "--json"], out=out) == 0
    listed = {row["run_id"]: row for row in map(json.loads, out.getvalue().splitlines())}
    assert listed["good-run"]["status"] == "done" and listed["big-pid"]["status"] == "damaged"
    assert "its pid must be a process id" in listed["big-pid"]["error"]
    assert capsys.readouterr().err == ""


def test_export_writes_the_same_zip_as_the_page_to_run_id_zip_by_default(tmp_path, monkeypatch, capsys):
    from core.archive import run_archive
    from core.store import RunStore

    runs = tmp_path / "runs"
    shutil.copytree(DEFAULT_MODEL_DIR, runs / "good-run")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    assert main(["export", "good-run", "--runs-dir", str(runs)], out=out) == 0
    written = tmp_path / "good-run.zip"
    assert out.getvalue() == "good-run.zip\n" and capsys.readouterr().err == ""
    assert written.read_bytes()[:2] == b"PK"
    with zipfile.ZipFile(written) as archive, zipfile.ZipFile(io.BytesIO(run_archive(RunStore(runs).info("good-run")))) as page:
        assert archive.namelist() == page.namelist() == ["good-run/meta.json", "good-run/weights-000008.safetensors"]
        assert all(archive.read(name) == page.read(name) for name in archive.namelist())
    before = written.read_bytes()
    assert main(["export", "good-run", "--runs-dir", str(runs), "--output", str(tmp_path)], out=io.StringIO()) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and written.read_bytes() == before  # never replaced


@pytest.mark.parametrize("target", ["/etc/passwd", "/dev/urandom"])
def test_export_refuses_weights_that_are_a_link_with_one_line_and_leaves_no_file(tmp_path, capsys, target):
    runs, output = tmp_path / "runs", tmp_path / "out"
    folder = shutil.copytree(DEFAULT_MODEL_DIR, runs / "linked-run")
    weights = folder / json.loads((folder / "meta.json").read_text())["weights_file"]
    weights.unlink()
    weights.symlink_to(target)
    output.mkdir()
    code = main(["export", "linked-run", "--runs-dir", str(runs), "--output", str(output / "linked.zip")],
                out=io.StringIO())
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("error:") and "not a plain file" in err, err
    assert list(output.iterdir()) == []


@pytest.mark.parametrize("args, words", [(["export", "../etc"], "not a valid run id"),
                                         (["export", "nope"], "no run called 'nope'")])
def test_export_of_a_bad_or_unknown_run_is_one_line(tmp_path, capsys, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    assert main([*args, "--runs-dir", str(tmp_path / "runs")], out=io.StringIO()) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and list(tmp_path.iterdir()) == []


# ---- training on a folder of digit images, fine-tuning a saved run ------------------------------------------------

def digit_folder(folder: Path, per_class: int = 4, digits: range = range(10)) -> Path:
    from tests.drawn_digits import drawn

    for digit in digits:
        (folder / str(digit)).mkdir(parents=True)
        for index in range(per_class):
            drawn(digit, width=12 + 3 * index).save(folder / str(digit) / f"{index}.png")
    return folder


def test_train_from_scratch_on_a_folder_of_digit_images(tmp_path):
    folder = digit_folder(tmp_path / "my-digits")
    (folder / "3" / "notes.txt").write_text("not a digit")
    done = cli("train", "--dataset", str(folder), "--model", "mlp", "--epochs", "2",  # the default batch: 64
               "--runs-dir", str(tmp_path / "other-runs"), "--json")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["dataset"] == "folder" and summary["from_run"] is None and summary["before"] is None
    assert summary["collection"] == {"name": "my-digits", "images": 40, "held_out_images": 10}
    assert summary["collection_accuracy"] == summary["test_accuracy"]  # the held-out part is its test set
    assert summary["batch_size"] == 30  # larger than the folder's 30 training images: one batch of all of them
    assert "note: 1 file skipped in my-digits (not .png" in done.stderr and "3/notes.txt" in done.stderr
    again = cli("train", "--dataset", str(folder), "--from-run", summary["run_id"], "--epochs", "1",
                "--runs-dir", str(tmp_path / "other-runs"), "--json")  # the run to continue is found in --runs-dir
    tuned = json.loads(again.stdout.strip().splitlines()[-1])
    assert tuned["from_run"] == summary["run_id"] and tuned["before"]["collection_accuracy"] == summary["test_accuracy"]


def test_fine_tune_the_shipped_model_reports_before_and_after_on_both_test_sets(tmp_path, mnist_dir):
    """One fine-tune (each evaluates the 10,000 MNIST test images twice): the closing line says what the saved run
    records. (The JSON summary of a fine-tune: test_train_from_scratch_on_a_folder_of_digit_images.)"""
    folder = digit_folder(tmp_path / "mine")
    done = cli("train", "--dataset", str(folder), "--from-run", "default", "--epochs", "1", "--mix-share", "0.25",
               "--data-dir", str(mnist_dir), "--runs-dir", str(tmp_path / "runs"))
    (run_dir,) = (tmp_path / "runs").iterdir()
    meta = json.loads((run_dir / "meta.json").read_text())
    before, final = meta["before"], meta["final"]
    assert (meta["from_run"], meta["dataset"], meta["collection"]["share"]) == ("default", "mnist", 0.25)
    assert before["test_accuracy"] == 0.9915 and 0 <= before["collection_accuracy"] <= 1
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith("done: fast-cnn on mnist, 1 epochs"), line
    assert f"; held-out digits {before['collection_accuracy']:.1%} -> {final['collection_accuracy']:.1%}, " in line, line
    assert line.endswith(f"mnist test set 99.15% -> {final['test_accuracy']:.2%}"), line


@pytest.mark.parametrize("make, words", [
    (lambda d: d.mkdir(), "has no class folders"),
    (lambda d: (d / "cats").mkdir(parents=True), "folder named 'cats': class folders must be named 0 to 9"),
    (lambda d: (digit_folder(d, digits=range(2)), (d / "7").mkdir()), "has empty class folders (7)"),
    (lambda d: (digit_folder(d, digits=range(2), per_class=1), (d / "1" / "bomb.png").write_bytes(
        png_declaring(30_000, 30_000))), "too few readable images"),  # the bomb left out, one image a class remains
])
def test_a_bad_folder_exits_1_with_one_line_and_saves_nothing(tmp_path, capsys, make, words):
    make(tmp_path / "bad")
    code = main(["train", "--dataset", str(tmp_path / "bad"), "--runs-dir", str(tmp_path / "runs")], out=io.StringIO())
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("error:") and words in err, err
    assert not (tmp_path / "runs").exists()


def test_an_image_that_cannot_be_opened_is_left_out_of_a_folders_training_and_said(tmp_path, capsys):
    digit_folder(tmp_path / "mine", digits=range(2))
    (tmp_path / "mine" / "1" / "bomb.png").write_bytes(png_declaring(30_000, 30_000))
    code = main(["train", "--dataset", str(tmp_path / "mine"), "--epochs", "1", "--runs-dir", str(tmp_path / "runs")],
                out=io.StringIO())
    err = capsys.readouterr().err
    assert code == 0 and "note: 1 image left out: mine/1/bomb.png declares an enormous size" in err, err
    assert "a batch of 6 images, not 7" in err  # the batch fitted to the 8 files' training part before any was read


@pytest.mark.parametrize("args, words", [
    (["--from-run", "nope"], "no run called 'nope'"),
    (["--from-run", "../default"], "not a valid run id"),
    (["--from-run", "default", "--recipe", "lenet5"], "leave --recipe out"),
    (["--from-run", "default", "--model", "lenet5"], "run default is a fast-cnn model, not lenet5"),
    (["--mix-share", "0"], "collection share must be a number, more than 0 and at most 1"),
    (["--mix-share", "x"], "--mix-share: must be a number"),
    (["--held-out-share", "0.9"], "held-out share must be a number, more than 0 and at most 0.5"),
])
def test_bad_fine_tune_arguments_exit_2_with_one_line(tmp_path, capsys, args, words):
    folder = digit_folder(tmp_path / "mine", per_class=2, digits=range(2))
    code = main(["train", "--dataset", str(folder), *args, "--runs-dir", str(tmp_path / "runs")], out=io.StringIO())
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error:") and words in err, err
    assert not (tmp_path / "runs").exists()


def test_runs_on_a_file_says_it_is_not_a_folder(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not runs")
    code = main(["runs", "--runs-dir", str(tmp_path / "notes.txt")], out=io.StringIO())
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is a file, not a folder of runs" in err, err  # "No runs yet" before
