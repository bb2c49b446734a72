#!/bin/bash
set -e
sed -i 's/lo = mid$/lo = mid + 1/; s/hi = mid$/hi = mid - 1/' /app/search.py
