#!/usr/bin/env bash
# The whole test suite (run by .ci/run after `tools/install.sh dev`): notebooks and package in sync, notebooks clean,
# ruff, every notebook executed as nbdev_test does (cells flagged `#| slow` / `#| cuda` skipped) while the docs site is built, then
# pytest (tests/test_docs.py checks the site, in Chromium too), whose
# summary line ends the output. Tests that need ../shared/data skip with a printed reason where it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" MPLBACKEND=Agg TQDM_MININTERVAL=5
t0=$SECONDS
step() { printf '\n== %s (%ds)\n' "$*" $((SECONDS - t0)); }

step "posebench/ in sync with nbs/ (nbdev_export)"
snap=$(mktemp -d); cp -r posebench "$snap/"
nbdev_export
if ! diff -r -q -x __pycache__ "$snap/posebench" posebench; then
  echo "FAILED: posebench/ was out of sync with the notebooks; nbdev_export has rewritten it: review and commit."; exit 1
fi
rm -rf "$snap"

step "notebooks clean (tools/clean_nbs.py --check)"
python tools/clean_nbs.py --check

step "exported package: ruff (undefined names, unused imports)"
ruff check --select F posebench

[ -d ../shared/data ] || echo "NOTE: ../shared/data not found: tests on the real samples will be SKIPPED (CI has it)."

step "notebooks executed + docs site (python tools/docs.py build; the site is checked by tests/test_docs.py below)"
# The build's first step executes every notebook exactly as nbdev_test does (execnb in the notebook's folder, IN_TEST=1,
# settings.ini's tst_flags cells skipped) and fails on any error: it is the notebook test, run once for both purposes.
# One thread per notebook: two notebooks run at once on 2 cores, and oversubscribed OpenMP threads spin (8x slower).
OMP_NUM_THREADS=1 python tools/docs.py build --quiet --jobs 2

step "pytest"
pytest -q tests
