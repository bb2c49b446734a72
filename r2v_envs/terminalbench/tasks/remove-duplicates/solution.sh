#!/bin/bash
set -e
cd /app/photos && declare -A seen; for f in $(ls | sort); do h=$(sha256sum "$f" | cut -d' ' -f1); if [ -n "${seen[$h]}" ]; then rm "$f"; else seen[$h]=1; fi; done
