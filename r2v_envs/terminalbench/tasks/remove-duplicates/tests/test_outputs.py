import os

def test_dedup():
    assert sorted(os.listdir('/app/photos')) == ['a.jpg', 'b.jpg', 'c.jpg']
