import subprocess

def git(*a):
    return subprocess.run(['git', '-C', '/app/repo', *a], capture_output=True, text=True).stdout

def test_reverted():
    assert len(git('log', '--format=%H').split()) == 4
    assert 'return a + b' in open('/app/repo/calc.py').read()
    assert git('status', '--porcelain').strip() == ''
