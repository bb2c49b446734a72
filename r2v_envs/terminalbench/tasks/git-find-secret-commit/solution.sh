#!/bin/bash
set -e
cd /app/repo && git log -S SECRET_TOKEN --format=%H | tail -1 > /app/commit.txt
