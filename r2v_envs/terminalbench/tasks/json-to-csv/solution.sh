#!/bin/bash
set -e
python3 -c "import csv,json; u=sorted(json.load(open('/app/users.json')), key=lambda r: r['id']); w=csv.writer(open('/app/users.csv','w',newline='')); w.writerow(['id','name','email']); [w.writerow([r['id'],r['name'],r['email']]) for r in u]"
