def test_leaks():
    assert open('/app/leaks.txt').read().split() == ['/app/src/config/prod.env', '/app/src/deploy.py']
