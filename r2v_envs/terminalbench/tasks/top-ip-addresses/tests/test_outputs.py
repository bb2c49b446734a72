def test_top():
    assert open('/app/top_ips.txt').read().split('\n')[:3] == ['4 10.0.0.1', '3 10.0.0.7', '2 192.168.1.5']
