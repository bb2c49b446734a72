#!/bin/bash
mkdir -p /app/backup
for f in $(ls /app/docs); do
    cp /app/docs/$f /app/backup/
done
