#!/usr/bin/env bash
# Install everything the test suite needs, then run all of it:
# Python packages (pinned), Chromium's headless shell for the real-browser tests and Fashion-MNIST, both from
# Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install --quiet --disable-pip-version-check -r requirements-test.txt

missing=()
command -v chromium-headless-shell >/dev/null 2>&1 || missing+=(chromium-headless-shell)
[ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Two workers (the suite's goal is under 5 min on 2 cores): the browser tests in two groups, one to each worker, in
# order, each group sharing one served app and one Chromium (tests/conftest.py groups them and collects them first;
# --no-loadscope-reorder keeps that order), while the other files fill in around them, file by file. The 30 slowest
# tests are listed at the end. Arguments come last, so "-n 0" runs everything in one process.
# Only the plugins the suite uses: others a machine has installed (hypothesis, pytest-benchmark, anyio here) cost
# each of the three processes 1.3 s of imports at the start, and one of them warns under xdist.
export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
exec python -m pytest -p xdist.plugin -n 2 --dist loadgroup --no-loadscope-reorder --durations=30 "$@"
