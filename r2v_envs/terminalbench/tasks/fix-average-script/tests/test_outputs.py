import subprocess

def run(path):
    return subprocess.run(['python3', '/app/average.py', path], capture_output=True, text=True).stdout.strip()

def test_average(tmp_path):
    assert run('/app/numbers.txt') == '2.50'
    empty = tmp_path / 'e.txt'; empty.write_text('')
    assert run(str(empty)) == '0.00'
