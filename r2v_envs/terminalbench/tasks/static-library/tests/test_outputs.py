import subprocess

def test_lib():
    members = subprocess.run(['ar', 't', '/app/libmathx.a'], capture_output=True, text=True).stdout.split()
    assert sorted(members) == ['cube.o', 'square.o']
    assert subprocess.run(['/app/app'], capture_output=True, text=True).stdout.strip() == '9 27'
