#!/bin/bash
set -e
cd /app/repo && git init -q && git add README.md && git commit -qm 'Initial commit'
