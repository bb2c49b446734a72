import os, subprocess

def test_make():
    subprocess.run(['make', '-C', '/app', 'clean'], check=True, capture_output=True)
    subprocess.run(['make', '-C', '/app'], check=True, capture_output=True)
    assert subprocess.run(['/app/calc'], capture_output=True, text=True).stdout.strip() == '7'
    subprocess.run(['make', '-C', '/app', 'clean'], check=True, capture_output=True)
    assert not os.path.exists('/app/calc')
