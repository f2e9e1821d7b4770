#!/usr/bin/env bash
# Set up nnstudy on a fresh Debian/Ubuntu machine (root or sudo):
#   system packages - Noto CJK fonts and Pango for the PDF report, Chromium for the report's screenshot
#                     of the recogniser (Playwright drives it and never downloads a browser), Fashion-MNIST
#                     (dataset-fashion-mnist: the second study, config/fashion.yaml, offline); with
#                     --test also poppler-utils (PDF checks), PostgreSQL (the distributed-storage test) and
#                     munge + slurmctld + slurmd + slurm-client (the one-node SLURM cluster of tests/test_slurm.py);
#   .venv           - a virtual environment with the project installed in editable mode.
# Usage: bash scripts/bootstrap.sh            # to run the study
#        bash scripts/bootstrap.sh --test     # to run the tests as well
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
packages="python3-venv fonts-noto-cjk libpango-1.0-0 libpangoft2-1.0-0 chromium dataset-fashion-mnist"
if [ "${1:-}" = "--test" ]; then
  extras="[test]"
  packages="$packages poppler-utils postgresql munge slurmctld slurmd slurm-client"
fi

if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $packages >/dev/null
else
  echo "bootstrap: no apt-get; install these yourself: $packages" >&2
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".$extras"
# the console of `snakemake` (profiles/default: logger nnstudy): Snakemake finds a logger plugin by its
# installed module's name, so it is a package of its own (workflow/logger), not part of the editable install
.venv/bin/python -m pip install -q ./workflow/logger
echo "bootstrap: ready (.venv)"
