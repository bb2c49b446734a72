import subprocess

def test_run():
    assert subprocess.run(['/app/hello'], capture_output=True, text=True).stdout == 'Hello from C\n'
