#!/bin/bash
set -e
cd /app && gcc -c lib/square.c -o square.o && gcc -c lib/cube.c -o cube.o && ar rcs libmathx.a square.o cube.o && gcc -o app app.c -L. -lmathx
