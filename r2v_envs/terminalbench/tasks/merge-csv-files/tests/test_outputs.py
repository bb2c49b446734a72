import csv

def test_merged():
    rows = list(csv.reader(open('/app/merged.csv')))
    assert rows == [['id', 'name', 'score'], ['2', 'Bea', '88'], ['3', 'Cal', '75'], ['10', 'Jo', '91']]
