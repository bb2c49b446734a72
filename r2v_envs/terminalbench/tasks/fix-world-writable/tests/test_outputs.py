import os, stat

def test_fixed():
    assert open('/app/fixed.txt').read().split() == ['/app/www/index.html', '/app/www/js/app.js']
    for root, _, files in os.walk('/app/www'):
        for f in files:
            assert not os.stat(os.path.join(root, f)).st_mode & stat.S_IWOTH
