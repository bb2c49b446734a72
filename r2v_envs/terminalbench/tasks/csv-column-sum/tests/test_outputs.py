def test_total():
    assert float(open('/app/total.txt').read()) == 176.0
