#!/bin/bash
set -e
chmod +x /app/scripts/*.sh && chmod 600 /app/secret.txt
