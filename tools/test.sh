#!/usr/bin/env bash
# The whole test suite (run by .ci/run after `tools/install.sh dev`): notebooks and package in sync, notebooks clean,
# every notebook executed by nbdev_test (cells flagged `#| slow` / `#| cuda` skipped), ruff, the docs site built, then
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

step "notebooks (nbdev_test)"
# one thread per notebook: two notebooks run at once on 2 cores, and oversubscribed OpenMP threads spin (8x slower)
OMP_NUM_THREADS=1 nbdev_test --n_workers 2 --timing

step "docs site (python tools/docs.py build; checked by tests/test_docs.py below)"
OMP_NUM_THREADS=1 python tools/docs.py build --quiet

step "pytest"
pytest -q tests
