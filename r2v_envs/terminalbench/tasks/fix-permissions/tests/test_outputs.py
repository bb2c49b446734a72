import os, stat

def test_modes():
    for name in ('build.sh', 'deploy.sh'):
        assert os.stat(f'/app/scripts/{name}').st_mode & stat.S_IXUSR
    assert stat.S_IMODE(os.stat('/app/secret.txt').st_mode) == 0o600
