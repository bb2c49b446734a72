import subprocess

def fib(n):
    return subprocess.run(['python3', '/app/fib.py', str(n)], capture_output=True, text=True).stdout.split()

def test_fib():
    assert fib(7) == ['0', '1', '1', '2', '3', '5', '8']
    assert fib(1) == ['0']
