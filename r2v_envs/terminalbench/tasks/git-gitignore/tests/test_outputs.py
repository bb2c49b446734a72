import subprocess

def test_clean():
    out = subprocess.run(['git', '-C', '/app/repo', 'status', '--porcelain'], capture_output=True, text=True).stdout
    assert out.strip() == ''
    assert '.gitignore' in subprocess.run(['git', '-C', '/app/repo', 'ls-files'], capture_output=True, text=True).stdout
