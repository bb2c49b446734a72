#!/bin/bash
set -e
printf 'Hello, world!\n' > /app/hello.txt
