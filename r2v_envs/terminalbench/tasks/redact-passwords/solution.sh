#!/bin/bash
set -e
sed -i -E 's/password=[^ ]*/password=****/g' /app/app.log
