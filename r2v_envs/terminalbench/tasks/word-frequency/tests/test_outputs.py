def test_freq():
    assert open('/app/freq.txt').read().split('\n')[:5] == ['the 4', 'cat 3', 'a 2', 'sat 2', 'dog 1']
