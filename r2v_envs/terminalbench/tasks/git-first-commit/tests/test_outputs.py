import subprocess

def git(*a):
    return subprocess.run(['git', '-C', '/app/repo', *a], capture_output=True, text=True, check=True).stdout

def test_commit():
    assert git('log', '--format=%s').strip() == 'Initial commit'
    assert git('ls-files').split() == ['README.md']
