import subprocess

def test_hash():
    want = subprocess.run(['git', '-C', '/app/repo', 'rev-list', '--all', '--reverse'], capture_output=True, text=True).stdout.split()[1]
    assert open('/app/commit.txt').read().strip() == want
