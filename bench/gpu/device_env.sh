#!/bin/bash
# Sourced by the bench/gpu/*.sh device scripts: installs the carried wheels (.device/wheels:
# iree-base-runtime cp312, transformers, regex), puts them and the checkout on PYTHONPATH,
# names the GPU, starts the clock `elapsed NAME` reads.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .device/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/python:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
date +%s > /tmp/t0
elapsed() { echo "$1 secs $(( $(date +%s) - $(cat /tmp/t0) ))"; }
