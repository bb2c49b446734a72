#!/bin/bash
set -e
cd /app/repo && printf '*.log\nbuild/\n' > .gitignore && git add .gitignore && git commit -qm 'Add gitignore'
