#!/bin/bash
set -e
python3 - <<'EOF'
import csv
people = {r['id']: r['name'] for r in csv.DictReader(open('/app/people.csv'))}
rows = [(int(r['id']), people[r['id']], r['score']) for r in csv.DictReader(open('/app/scores.csv')) if r['id'] in people]
with open('/app/merged.csv', 'w', newline='') as f:
    w = csv.writer(f); w.writerow(['id', 'name', 'score'])
    for row in sorted(rows): w.writerow(row)
EOF
