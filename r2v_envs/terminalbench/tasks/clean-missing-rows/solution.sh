#!/bin/bash
set -e
python3 -c "import csv; rows=list(csv.reader(open('/app/raw.csv'))); w=csv.writer(open('/app/clean.csv','w',newline='')); w.writerow(rows[0]); [w.writerow(r) for r in rows[1:] if all(x.strip() for x in r)]"
