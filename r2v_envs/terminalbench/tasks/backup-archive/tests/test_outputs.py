import tarfile

def test_archive():
    names = set(tarfile.open('/app/backup.tar.gz').getnames())
    assert 'project/main.py' in names and 'project/docs/readme.md' in names
    assert not any(n.endswith('.tmp') for n in names)
