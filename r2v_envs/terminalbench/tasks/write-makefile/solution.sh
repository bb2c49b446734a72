#!/bin/bash
set -e
printf 'calc: main.o ops.o\n\tgcc -o calc main.o ops.o\n\n%%.o: %%.c\n\tgcc -c $< -o $@\n\nclean:\n\trm -f calc *.o\n' > /app/Makefile
