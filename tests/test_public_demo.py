"""Who the app serves: its owner by default, visitors of a shared server in public demo mode; no server paths shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.demo import DEMO_ENV, DEMO_MAX_EPOCHS, demo_policy

REPO = Path(__file__).resolve().parents[1]
HOME = str(REPO / "pages" / "home.py")


@pytest.mark.parametrize("value", ["", "0", "off", "False", " no "])
def test_the_demo_mode_is_off_unless_asked_for(value):
    assert demo_policy({DEMO_ENV: value}) is None
    assert demo_policy({}) is None


@pytest.mark.parametrize("value", ["1", "on", "TRUE", "yes", "train"])
def test_the_training_demo_caps_runs(value):
    policy = demo_policy({DEMO_ENV: value})
    assert policy is not None and policy.training and not policy.deleting
    assert policy.training_problem(DEMO_MAX_EPOCHS, 1000) is None
    assert f"at most {DEMO_MAX_EPOCHS} epochs" in policy.training_problem(DEMO_MAX_EPOCHS + 1, 1000)
    assert "at most" in policy.training_problem(1, policy.max_train_images + 1)


@pytest.mark.parametrize("value", ["no-training", "predict-only", "yse", "2"])
def test_any_other_value_switches_training_off(value):
    """A typo must not open a public server to long trainings."""
    policy = demo_policy({DEMO_ENV: value})
    assert policy is not None and not policy.training and not policy.deleting
    assert "switched off" in policy.training_problem(1, 10)


def home() -> AppTest:
    app = AppTest.from_file(HOME, default_timeout=60).run()
    assert not app.exception, app.exception
    return app


def page_text(app: AppTest) -> str:
    parts = [element.value for kind in ("markdown", "caption", "info", "warning", "success") for element in
             getattr(app, kind)]
    return "\n".join(str(part) for part in parts)


def test_home_says_when_it_is_a_public_demo(monkeypatch):
    assert "public demo" not in page_text(home())
    monkeypatch.setenv(DEMO_ENV, "1")
    text = page_text(home())
    assert "public demo" in text and f"up to {DEMO_MAX_EPOCHS} epochs" in text
    monkeypatch.setenv(DEMO_ENV, "no-training")
    assert "training is switched off" in page_text(home())


def test_home_shows_the_default_folders_relative_to_the_app(monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("DIGIT_STUDIO_DATA")
    text = page_text(home())
    assert "Datasets are read from `data`" in text
    assert str(REPO) not in text


def test_a_public_demo_shows_a_folder_outside_the_app_by_its_name_only(monkeypatch, tmp_path):
    data = tmp_path / "private" / "datasets"
    monkeypatch.setenv("DIGIT_STUDIO_DATA", str(data))
    monkeypatch.setenv(DEMO_ENV, "1")
    text = page_text(home())
    assert "Datasets are read from `datasets`" in text
    assert str(tmp_path) not in text  # nor in the missing-dataset notes, which name the folder to put files in
