import csv

def test_clean():
    assert list(csv.reader(open('/app/clean.csv'))) == [['a', 'b', 'c'], ['1', '2', '3'], ['7', '8', '9']]
