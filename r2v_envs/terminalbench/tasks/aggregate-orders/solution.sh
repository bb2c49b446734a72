#!/bin/bash
set -e
python3 - <<'EOF'
import csv, json
sums = {}
for row in csv.DictReader(open('/app/orders.csv')):
    sums[row['customer']] = sums.get(row['customer'], 0) + float(row['total'])
json.dump(sums, open('/app/summary.json', 'w'))
EOF
