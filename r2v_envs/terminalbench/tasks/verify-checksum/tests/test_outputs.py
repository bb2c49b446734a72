import subprocess

def test_check():
    assert subprocess.run(['sha256sum', '-c', 'firmware.sha256'], cwd='/app', capture_output=True).returncode == 0
