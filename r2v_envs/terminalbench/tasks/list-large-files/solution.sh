#!/bin/bash
set -e
find /app/data -type f -size +1000c | sort > /app/large.txt
