"""The app's Streamlit settings: small uploads, XSRF protection, no usage statistics, no tracebacks for users."""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text(encoding="utf-8"))


def test_uploads_are_capped_at_a_few_megabytes():
    assert 1 <= CONFIG["server"]["maxUploadSize"] <= 10  # digit images are kilobytes; Streamlit's default is 200


def test_xsrf_protection_is_on():
    assert CONFIG["server"]["enableXsrfProtection"] is True
    assert CONFIG["server"].get("enableCORS", True) is True  # CORS off would accept connections from any origin


def test_usage_statistics_are_off():
    assert CONFIG["browser"]["gatherUsageStats"] is False


def test_users_never_see_error_details():
    assert CONFIG["client"]["showErrorDetails"] == "none"


def test_every_setting_is_one_streamlit_knows():
    from streamlit import config

    known = config.get_config_options()
    for section, values in CONFIG.items():
        for key in values:
            assert f"{section}.{key}" in known, f"{section}.{key} is not a Streamlit option: it would do nothing"


def test_streamlit_applies_the_file_when_started_from_the_repository():
    options = ["server.maxUploadSize", "server.enableXsrfProtection", "browser.gatherUsageStats",
               "client.showErrorDetails"]
    script = ("import json, sys\nfrom streamlit import config\nconfig.get_config_options(force_reparse=True)\n"
              f"print(json.dumps([config.get_option(name) for name in {options!r}]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}  # no overrides from the caller
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    applied = dict(zip(options, json.loads(done.stdout.strip().splitlines()[-1])))
    assert applied == {name: CONFIG[name.split(".")[0]][name.split(".")[1]] for name in options}
