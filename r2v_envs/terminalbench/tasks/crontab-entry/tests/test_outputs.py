def test_cron():
    lines = [l for l in open('/app/crontab.txt').read().splitlines() if l.strip() and not l.startswith('#')]
    assert len(lines) == 1
    fields = lines[0].split()
    assert fields[:5] == ['30', '2', '*', '*', '*'] and fields[5] == '/app/backup.sh'
    assert '>>' in lines[0] and '/app/backup.log' in lines[0]
