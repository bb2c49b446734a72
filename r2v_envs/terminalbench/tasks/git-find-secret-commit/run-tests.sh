#!/bin/bash
# Offline: the sandbox provides pytest (no uv/curl downloads).
set -e
cd /app
python3 -m pytest "${TEST_DIR:-/tests}/test_outputs.py" -rA -p no:cacheprovider
