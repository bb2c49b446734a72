import subprocess

def git(*a):
    return subprocess.run(['git', '-C', '/app/repo', *a], capture_output=True, text=True).stdout

def test_branch():
    assert 'login.py' in git('ls-tree', '--name-only', 'feature/login').split()
    assert 'login.py' not in git('ls-tree', '--name-only', 'main').split()
