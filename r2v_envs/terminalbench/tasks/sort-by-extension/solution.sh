#!/bin/bash
set -e
for f in /app/inbox/*; do ext="${f##*.}"; mkdir -p "/app/sorted/$ext"; mv "$f" "/app/sorted/$ext/"; done
