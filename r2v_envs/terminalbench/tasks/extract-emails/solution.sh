#!/bin/bash
set -e
grep -oiE '[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}' /app/contacts.txt | tr 'A-Z' 'a-z' | sort -u > /app/emails.txt
