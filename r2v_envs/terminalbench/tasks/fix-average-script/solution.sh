#!/bin/bash
set -e
cat > /app/average.py <<'EOF'
import sys
values = [float(x) for x in open(sys.argv[1]).read().split()]
print(f"{(sum(values) / len(values)) if values else 0:.2f}")
EOF
