#!/bin/bash
set -e
find /app/www -type f -perm -o+w | sort > /app/fixed.txt && xargs -r chmod o-w < /app/fixed.txt
