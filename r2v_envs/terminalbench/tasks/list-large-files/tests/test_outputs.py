def test_large():
    assert open('/app/large.txt').read().split() == ['/app/data/big.bin', '/app/data/sub/huge.log']
