import subprocess

def test_sum():
    assert subprocess.run(['/app/sum', '2', '3', '4'], capture_output=True, text=True).stdout.strip() == '9'
    assert subprocess.run(['/app/sum'], capture_output=True, text=True).stdout.strip() == '0'
