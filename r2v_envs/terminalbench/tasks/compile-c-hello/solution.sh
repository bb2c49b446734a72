#!/bin/bash
set -e
gcc -o /app/hello /app/hello.c
