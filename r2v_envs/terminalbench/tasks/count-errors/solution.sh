#!/bin/bash
set -e
grep -c ERROR /app/server.log > /app/error_count.txt
