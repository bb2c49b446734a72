#!/bin/bash
set -e
cd /app && sha256sum firmware.bin > firmware.sha256
