#!/bin/bash
set -e
cd /app/srv && for d in */; do printf '%s %s\n' "$(find "$d" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')" "${d%/}"; done | sort -rn > /app/usage.txt
