import csv

def test_csv():
    assert list(csv.reader(open('/app/users.csv'))) == [['id', 'name', 'email'], ['1', 'Ann', 'ann@x.io'], ['2', 'Bob', 'bob@x.io']]
