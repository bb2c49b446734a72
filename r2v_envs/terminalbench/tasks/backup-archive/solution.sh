#!/bin/bash
set -e
cd /app && tar --exclude='*.tmp' -czf backup.tar.gz project
