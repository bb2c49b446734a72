#!/bin/bash
set -e
grep -rlE 'AKIA[A-Z0-9]{16}' /app/src | sort > /app/leaks.txt
