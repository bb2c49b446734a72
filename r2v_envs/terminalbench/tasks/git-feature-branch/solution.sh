#!/bin/bash
set -e
cd /app/repo && git checkout -q -b feature/login && echo 'def login(): pass' > login.py && git add login.py && git commit -qm 'Add login'
