#!/bin/bash
set -e
echo '30 2 * * * /app/backup.sh >> /app/backup.log 2>&1' > /app/crontab.txt
