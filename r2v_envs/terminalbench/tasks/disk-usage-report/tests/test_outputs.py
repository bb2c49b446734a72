def test_usage():
    assert open('/app/usage.txt').read().split('\n')[:3] == ['3000 logs', '1500 www', '0 empty']
